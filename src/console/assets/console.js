// Progressive enhancement only: every page works without this script (the server checks
// everything again).
// - The pipeline table refreshes itself every 5 seconds.
// - A button that submits a form is disabled while the request is on its way (no double submit).
// - The decision form refuses an empty answer to Approve and a Reject without a note, keeps the
//   reviewer's edit in sessionStorage until it is sent (restored when she comes back to the item),
//   and a claim's remaining time counts down.
(function () {
  "use strict";
  var decide = document.getElementById("decide");
  var stashKey = decide ? "sluice-draft:" + decide.getAttribute("action") : null;

  function refuse(field, why) {
    field.setCustomValidity(why);
    field.reportValidity();
    field.addEventListener("input", function () { field.setCustomValidity(""); }, { once: true });
  }

  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    if (event.target === decide && button) {
      var answer = decide.elements.answer, note = decide.elements.note;
      if (button.value === "approve" && answer && !answer.value.trim()) {
        event.preventDefault();
        return refuse(answer, "An approved answer cannot be empty: write it, or reject with a note.");
      }
      if (button.value === "reject" && note && !note.value.trim()) {
        event.preventDefault();
        return refuse(note, "A rejection needs a note saying why.");
      }
      // Sent: the server keeps the edit from here on, whatever it answers.
      try { sessionStorage.removeItem(stashKey); } catch (e) { /* storage off: nothing kept */ }
    }
    if (button && event.target.method === "post") {
      // After the form data (with the clicked button's value) is taken.
      setTimeout(function () { button.disabled = true; }, 0);
    }
  });

  if (decide && decide.elements.answer) {
    var answer = decide.elements.answer, note = decide.elements.note;
    var stash = null;
    try { stash = JSON.parse(sessionStorage.getItem(stashKey) || "null"); } catch (e) { stash = null; }
    // The page shows the model's text (no edit kept by the server): bring back an unsent edit.
    var fresh = answer.value.trim() === (answer.dataset.original || "").trim() && !note.value;
    if (stash && fresh && (stash.answer !== answer.value || stash.note)) {
      answer.value = stash.answer;
      note.value = stash.note || "";
      var told = document.createElement("p");
      told.className = "flash";
      told.id = "draft-restored";
      told.textContent = "Your unsent edit was restored: check it, then decide.";
      decide.insertBefore(told, decide.firstChild);
    }
    var save = function () {
      try {
        sessionStorage.setItem(stashKey, JSON.stringify({ answer: answer.value, note: note.value }));
      } catch (e) { /* storage off or full: the server still keeps refused edits */ }
    };
    answer.addEventListener("input", save);
    note.addEventListener("input", save);
  }

  var lefts = document.querySelectorAll("[data-left-ms]");
  if (lefts.length) {
    var loaded = Date.now();
    var tick = function () {
      lefts.forEach(function (el) {
        var ms = Number(el.dataset.leftMs) - (Date.now() - loaded);
        var min = Math.ceil(Math.max(ms, 0) / 60000);
        el.textContent = min <= 0 ? "lapsed" : min < 60 ? min + " min left"
          : Math.floor(min / 60) + " h " + (min % 60) + " min left";
      });
    };
    setInterval(tick, 15000);
  }

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
