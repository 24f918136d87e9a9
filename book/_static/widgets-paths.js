// Glue between the locally served Jupyter widget manager and the book's MathJax 3 (loaded after require.js).
(function () {
  // 1. Point require.js at _static/vendor/html-manager/ (next to this file), so the fonts and modules the
  //    widget manager loads come from there rather than from a CDN or the page's own folder.
  var here = document.currentScript.src;
  var base = here.substring(0, here.lastIndexOf("/") + 1) + "vendor/html-manager";
  require.config({ paths: { "@jupyter-widgets/html-manager/dist": base } });

  // 2. The widget manager typesets labels through MathJax 2's MathJax.Hub.Queue; the book loads MathJax 3,
  //    which has no Hub. Before the widgets render (DOMContentLoaded, after MathJax's deferred script has
  //    run), map the calls it makes onto MathJax 3's typesetPromise.
  document.addEventListener("DOMContentLoaded", function () {
    if (!window.MathJax || window.MathJax.Hub) return;
    window.MathJax.Hub = {
      Queue: function () {
        for (var i = 0; i < arguments.length; i++) {
          var job = arguments[i];
          if (Array.isArray(job) && job[0] === "Typeset" && window.MathJax.typesetPromise) {
            window.MathJax.typesetPromise(job[2] ? [job[2]] : undefined).catch(function () {});
          } else if (typeof job === "function") {
            job();
          }
        }
      },
    };
  });
})();
