() => {
  // Text alternatives Gradio's own markup lacks: the attention picture names its word, the
  // example thumbnails and picture buttons get names. Re-applied whenever the page changes.
  const name = (el, text) => {
    if (el && el.getAttribute("aria-label") !== text) el.setAttribute("aria-label", text);
  };
  const describe = () => {
    const chip = document.querySelector("#word-chips label.selected");
    const word = chip ? chip.textContent.trim() : "";
    const looked = word ? `Where the model looked for the word "${word}"` : "Where the model looked";
    const pictures = [["#attention", looked], ["#gif", "All words of the caption, animated"],
                      ["#grid", "All words of the caption, the paper's figure"],
                      ["#soft-grid", "The soft-attention model's words, the paper's figure"],
                      ["#hard-grid", "The hard-attention model's words and looked-at cells"]];
    for (const [id, text] of pictures) {
      document.querySelectorAll(`${id} img`).forEach((img) => {
        if (img.alt !== text) img.alt = text;
        name(img.closest("button"), text);
      });
    }
    document.querySelectorAll(".gallery-item").forEach((button, i) => {
      const img = button.querySelector("img");
      const file = img ? (img.getAttribute("src") || "").split("/").pop().split(".")[0] : "";
      name(button, `Example ${i + 1}${file ? ": " + decodeURIComponent(file) : ""}`);
    });
  };
  // The words are radio buttons: the arrow keys (and Home/End) move to the next word, as in
  // any radio group; Gradio's radio does not do it by itself.
  document.addEventListener("keydown", (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || !input.closest("#word-chips")) return;
    const all = [...document.querySelectorAll("#word-chips input[type=radio]")];
    const at = all.indexOf(input);
    const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[event.key];
    let next = step === undefined ? null : at + step;
    if (event.key === "Home") next = 0;
    if (event.key === "End") next = all.length - 1;
    if (next === null || at < 0) return;
    event.preventDefault();
    const target = all[Math.max(0, Math.min(all.length - 1, next))];
    target.click();
    target.focus();
  });
  new MutationObserver(describe).observe(document.body, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["class", "src"],
  });
  describe();
}
