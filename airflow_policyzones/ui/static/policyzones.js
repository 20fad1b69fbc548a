// Policy Zones pages inside the Airflow UI's frame: follow its colour mode and font, and open
// Airflow links (task instances, logs, DAGs) in the Airflow UI itself rather than in the frame.
(function () {
  "use strict";
  var root = document.documentElement;

  function host() {
    try {
      return window.parent !== window ? window.parent.document : null;
    } catch (error) {
      return null; // framed by another origin: keep our own defaults
    }
  }

  function storedTheme() {
    var theme = null;
    try { theme = window.localStorage.getItem("theme"); } catch (error) { theme = null; }
    if (theme === "dark" || theme === "light") return theme;
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  function applyTheme() {
    var doc = host();
    var dark = doc ? doc.documentElement.classList.contains("dark") : storedTheme() === "dark";
    root.classList.toggle("dark", dark);
    if (doc && doc.body) {
      var font = window.parent.getComputedStyle(doc.body).fontFamily;
      if (font) root.style.setProperty("--pz-font", font);
    }
  }

  applyTheme();
  var doc = host();
  if (doc) {
    new MutationObserver(applyTheme).observe(doc.documentElement, { attributes: true, attributeFilter: ["class"] });
  } else {
    window.addEventListener("storage", applyTheme);
  }

  document.addEventListener("click", function (event) {
    var link = event.target && event.target.closest ? event.target.closest("a[data-airflow-link]") : null;
    if (!link || window.top === window || event.defaultPrevented) return;
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    try {
      // The Airflow UI is a single-page app: change its URL and let its router render the page.
      window.top.history.pushState(null, "", link.href);
      window.top.dispatchEvent(new PopStateEvent("popstate", { state: null }));
    } catch (error) {
      window.top.location.assign(link.href);
    }
  });
})();
