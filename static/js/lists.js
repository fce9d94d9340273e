// The list block (templates/ui/): keeps keyboard focus on the column chooser after it has
// saved a choice and the list's actions were redrawn around it.
(() => {
  "use strict";

  let chooserToggle = null;

  document.addEventListener("htmx:beforeRequest", (event) => {
    const chooser = event.target.closest && event.target.closest("[data-column-chooser]");
    const toggle = chooser && chooser.querySelector("[data-bs-toggle=dropdown]");
    chooserToggle = toggle ? toggle.id : null;
  });

  // After every swap of the response (the table and, out of band, the actions) has settled.
  document.addEventListener("htmx:afterSettle", () => {
    if (!chooserToggle) return;
    setTimeout(() => {
      const toggle = chooserToggle && document.getElementById(chooserToggle);
      chooserToggle = null;
      if (toggle) toggle.focus();
    }, 0);
  });
})();
