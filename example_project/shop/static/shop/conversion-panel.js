// Re-fetches the conversion panel (its data-refresh URL) until its status is final, so
// the visitor sees it go from pending to sent. Stops after a few minutes.
(function () {
  "use strict";
  var INTERVAL_MS = 1000;
  var deadline = Date.now() + 5 * 60 * 1000;

  function poll() {
    var panel = document.getElementById("conversion");
    if (!panel || panel.dataset.final === "true" || Date.now() > deadline) {
      return;
    }
    fetch(panel.dataset.refresh, { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        panel.outerHTML = html;
        window.setTimeout(poll, INTERVAL_MS);
      })
      .catch(function () {
        window.setTimeout(poll, INTERVAL_MS * 3);
      });
  }

  window.setTimeout(poll, INTERVAL_MS);
})();
