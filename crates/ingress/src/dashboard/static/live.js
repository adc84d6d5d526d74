// bosun dashboard: follow the page's live region over server-sent events. The server
// sends the region's HTML whenever it changes; forms live outside it, so typing is
// never interrupted. Without JavaScript the pages still work, reloaded by hand.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var state = document.getElementById("livestate");
  if (!live || !window.EventSource) return;
  var view = live.getAttribute("data-view") || location.pathname + location.search;
  var source;
  function say(text) { if (state) state.textContent = text; }
  function connect() {
    source = new EventSource("/ui/live?view=" + encodeURIComponent(view));
    source.addEventListener("open", function () { say("live"); document.body.setAttribute("data-live", "open"); });
    source.addEventListener("update", function (e) {
      if (live.innerHTML === e.data) return;
      // Keep keyboard focus on the same control when the region is redrawn.
      var focused = document.activeElement && live.contains(document.activeElement) && document.activeElement.getAttribute("aria-label");
      live.innerHTML = e.data;
      var n = Number(live.getAttribute("data-updates") || "0") + 1;
      live.setAttribute("data-updates", String(n));
      say("live, updated " + new Date().toLocaleTimeString());
      if (focused) {
        var again = live.querySelector('[aria-label="' + focused.replace(/"/g, '\\"') + '"]');
        if (again) again.focus();
      }
    });
    source.addEventListener("error", function () {
      say("reconnecting…");
      document.body.setAttribute("data-live", "lost");
    });
  }
  connect();
})();
