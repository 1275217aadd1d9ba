// Copy buttons (progressive enhancement): <button data-copy="ID" hidden> copies the text of the
// element ID. Without this script the buttons stay hidden and the text is selected by hand.
"use strict";

for (const button of document.querySelectorAll("button[data-copy]")) {
  const label = button.textContent;
  button.hidden = false;
  button.addEventListener("click", async () => {
    const source = document.getElementById(button.dataset.copy);
    try {
      await navigator.clipboard.writeText(source.textContent.trim());
      button.textContent = "Copied";
    } catch {
      window.getSelection().selectAllChildren(source);  // no clipboard access: select it for Ctrl+C
      button.textContent = "Selected: press Ctrl+C";
    }
    window.setTimeout(() => { button.textContent = label; }, 2500);
  });
}
