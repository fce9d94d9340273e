// Site → Commissioning: "select all" in the Create dialog's device table, and the tab's dialog
// showing "Loading…" again once closed. Loaded with the tab and with the dialog (htmx runs
// the script when it swaps either in), so it installs its listeners only once.
(() => {
  "use strict";
  if (window.mcCommissioning) return;
  window.mcCommissioning = true;

  const boxes = (picker) => Array.from(picker.querySelectorAll('input[name="devices"]'));

  // The "select all" box follows the rows: checked when all are, mixed when some are.
  const sync = (picker) => {
    const all = picker.querySelector("[data-select-all]");
    if (!all) return;
    const rows = boxes(picker);
    const checked = rows.filter((box) => box.checked).length;
    all.hidden = rows.length === 0;
    all.checked = rows.length > 0 && checked === rows.length;
    all.indeterminate = checked > 0 && checked < rows.length;
  };

  const syncAll = (root) => {
    root.querySelectorAll("[data-device-picker]").forEach(sync);
  };

  document.addEventListener("change", (event) => {
    const picker = event.target.closest && event.target.closest("[data-device-picker]");
    if (!picker) return;
    if (event.target.matches("[data-select-all]")) {
      boxes(picker).forEach((box) => { box.checked = event.target.checked; });
    }
    sync(picker);
  });

  // The dialog's first content is its "Loading…" spinner; a closed dialog shows it again, so
  // the next one never flashes the previous form.
  const remember = () => {
    const dialog = document.getElementById("commissioning-dialog");
    if (dialog && !dialog.dataset.loading) dialog.dataset.loading = dialog.innerHTML;
  };

  document.addEventListener("htmx:afterSettle", (event) => {
    remember();
    syncAll(event.detail.elt || document);
  });

  document.addEventListener("hidden.bs.modal", (event) => {
    if (event.target.id !== "commissioning-modal") return;
    const dialog = document.getElementById("commissioning-dialog");
    if (dialog && dialog.dataset.loading) dialog.innerHTML = dialog.dataset.loading;
  });

  const ready = () => {
    remember();
    syncAll(document);
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
