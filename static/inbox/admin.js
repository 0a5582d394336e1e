/* Switchboard's additions to Django admin (no inline handlers: see CONTENT_SECURITY_POLICY).
 * A read-only field with [data-select-on-click] selects its whole value when clicked, to copy. */
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var field = event.target.closest && event.target.closest("[data-select-on-click]");
    if (field && field.select) field.select();
  });
})();
