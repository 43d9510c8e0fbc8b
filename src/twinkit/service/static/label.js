// The labeling page: while the clone learns from the donor's answers, ask the server every
// second whether it is done, then reload to show the new questions and guesses.
"use strict";
(function () {
  const status = document.getElementById("clone-status");
  if (!status || status.dataset.updating !== "true") {
    return;
  }
  const url = status.dataset.statusUrl;
  async function poll() {
    try {
      const answer = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (answer.ok) {
        const body = await answer.json();
        if (!body.updating) {
          window.location.reload();
          return;
        }
      } else if (answer.redirected || answer.status === 401) {
        window.location.assign("/login");
        return;
      }
    } catch (err) {
      // A dropped connection: try again on the next tick.
    }
    window.setTimeout(poll, 1000);
  }
  window.setTimeout(poll, 1000);
})();
