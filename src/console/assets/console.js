// Progressive enhancement only: every page works without this script.
// - The pipeline table refreshes itself every 5 seconds.
// - A button that submits a form is disabled while the request is on its way (no double submit).
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    if (button && event.target.method === "post") {
      // After the form data (with the clicked button's value) is taken.
      setTimeout(function () { button.disabled = true; }, 0);
    }
  });
  var live = document.getElementById("pipeline-live");
  if (live) {
    setInterval(function () {
      fetch(live.dataset.src, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) { live.innerHTML = html; })
        .catch(function () { /* keep the last table; the next tick tries again */ });
    }, 5000);
  }
})();
