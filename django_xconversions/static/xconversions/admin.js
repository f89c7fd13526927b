// Copy buttons beside clipped ids: the whole value goes to the clipboard.
"use strict";
{
    function fallbackCopy(text) {
        // Pages served over plain HTTP (not localhost) have no navigator.clipboard.
        const area = document.createElement("textarea");
        area.value = text;
        area.setAttribute("readonly", "");
        area.style.position = "fixed";
        area.style.opacity = "0";
        document.body.appendChild(area);
        area.select();
        document.execCommand("copy");
        area.remove();
        return Promise.resolve();
    }

    function copy(button) {
        const text = button.dataset.copy;
        const done = navigator.clipboard ? navigator.clipboard.writeText(text) : fallbackCopy(text);
        const label = button.textContent;
        done.catch(() => fallbackCopy(text)).then(() => {
            button.textContent = button.dataset.copied || "\u2713";
            setTimeout(() => { button.textContent = label; }, 1200);
        });
    }

    document.addEventListener("click", (event) => {
        const button = event.target.closest("button.xconv-copy");
        if (button) {
            event.preventDefault();
            copy(button);
        }
    });
}
