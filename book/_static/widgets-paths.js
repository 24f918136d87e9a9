// Point require.js at the locally served Jupyter widget manager, so that the fonts and modules it loads
// come from _static/vendor/html-manager/ (next to this file) rather than from a CDN or the page's folder.
(function () {
  var here = document.currentScript.src;
  var base = here.substring(0, here.lastIndexOf("/") + 1) + "vendor/html-manager";
  require.config({ paths: { "@jupyter-widgets/html-manager/dist": base } });
})();
