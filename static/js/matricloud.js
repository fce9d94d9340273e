// The portal's own behaviour, for every page. The Content-Security-Policy allows no inline
// script, so each piece finds its elements by data attributes and does nothing without them.
(() => {
  "use strict";

  // Controls marked data-submit-on-change submit their form (the language switch).
  document.addEventListener("change", (event) => {
    const control = event.target.closest("[data-submit-on-change]");
    if (control && control.form) control.form.submit();
  });

  // Copy buttons: data-copy names the element whose text goes to the clipboard.
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button || !navigator.clipboard) return;
    const source = document.querySelector(button.dataset.copy);
    if (!source) return;
    navigator.clipboard.writeText(source.textContent.trim()).then(() => {
      const icon = button.querySelector("i");
      if (!icon) return;
      icon.className = "bi bi-clipboard-check";
      setTimeout(() => { icon.className = "bi bi-clipboard"; }, 1500);
    });
  });

  // "Send code" answers with a one-line partial also when it refuses (400, 403, 429, 503):
  // show it, and disable the button while the server would refuse another code anyway.
  document.addEventListener("htmx:beforeSwap", (event) => {
    if (event.detail.target && event.detail.target.hasAttribute("data-code-status")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.addEventListener("htmx:afterSwap", (event) => {
    const target = event.detail.target;
    if (!target || !target.hasAttribute("data-code-status")) return;
    const status = target.querySelector("[data-wait]");
    let seconds = status ? parseInt(status.getAttribute("data-wait"), 10) || 0 : 0;
    const button = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (!button || seconds <= 0) return;
    const label = button.querySelector("[data-send-label]");
    const text = label.getAttribute("data-text") || label.textContent;
    label.setAttribute("data-text", text);
    button.disabled = true;
    let timer = null;
    const tick = () => {
      if (seconds <= 0) {
        clearInterval(timer);
        button.disabled = false;
        label.textContent = text;
        return;
      }
      label.textContent = `${text} (${seconds})`;
      seconds -= 1;
    };
    timer = setInterval(tick, 1000);
    tick();
  });

  // The main menu below the lg breakpoint is a Bootstrap offcanvas, which brings Escape, the
  // focus trap, the backdrop and focus back on the menu button; the button's aria-expanded
  // follows it here.
  const markMenuButtons = (menu, open) => {
    document.querySelectorAll(`[aria-controls="${menu.id}"]`).forEach((button) => {
      button.setAttribute("aria-expanded", String(open));
    });
  };
  document.addEventListener("show.bs.offcanvas", (event) => markMenuButtons(event.target, true));
  document.addEventListener("hidden.bs.offcanvas", (event) => markMenuButtons(event.target, false));

  // A wide table scrolls inside its box (.table-scroll, .table-responsive); a box that scrolls
  // gets a tab stop so that it can be scrolled with the keyboard, one that fits loses it again.
  const markScrollBoxes = () => {
    document.querySelectorAll(".table-scroll, .table-responsive").forEach((box) => {
      const scrolls = box.scrollWidth > box.clientWidth + 1;
      if (scrolls && !box.hasAttribute("tabindex")) {
        box.setAttribute("tabindex", "0");
        box.dataset.scrollBox = "";
      } else if (!scrolls && "scrollBox" in box.dataset) {
        box.removeAttribute("tabindex");
        delete box.dataset.scrollBox;
      }
    });
  };
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(markScrollBoxes, 150);
  });
  document.addEventListener("htmx:afterSettle", markScrollBoxes);

  const onReady = (fn) => {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fn);
    else fn();
  };

  onReady(() => {
    markScrollBoxes();
    if (window.bootstrap) {
      document.querySelectorAll('[data-bs-toggle="tooltip"]').forEach((element) => {
        bootstrap.Tooltip.getOrCreateInstance(element);
      });
    }

    // Registration: highlight the chosen account type (the radio button works without this).
    document.querySelectorAll("[data-account-types] input[type=radio]").forEach((radio) => {
      radio.addEventListener("change", () => {
        document.querySelectorAll("[data-account-types] .account-type-card").forEach((card) => {
          card.classList.toggle("selected", card.contains(radio));
        });
      });
    });

    // Add user (guide §5.2.1): two steps of one form, submitted together; without
    // JavaScript both simply show one after the other.
    const userForm = document.getElementById("user-add-form");
    if (userForm) {
      const sections = userForm.querySelectorAll("[data-step]");
      const labels = userForm.querySelectorAll("[data-step-label]");
      const show = (step) => {
        sections.forEach((s) => { s.hidden = s.dataset.step !== step; });
        labels.forEach((l) => l.classList.toggle("active", l.dataset.stepLabel === step));
      };
      const custom = document.getElementById("custom-password");
      const syncPassword = () => {
        const mode = userForm.querySelector("[data-password-mode]:checked");
        if (custom) custom.hidden = !mode || mode.value !== "custom";
      };
      userForm.querySelectorAll("[data-password-mode]").forEach((r) => r.addEventListener("change", syncPassword));
      userForm.querySelectorAll("[data-go-step]").forEach((button) => button.addEventListener("click", () => {
        const target = button.dataset.goStep;
        if (target === "2") {
          const fields = userForm.querySelectorAll('[data-step="1"] input:not([type=hidden]), [data-step="1"] select, [data-step="1"] textarea');
          for (const field of fields) {
            if (!field.closest("[hidden]") && !field.checkValidity()) { field.reportValidity(); return; }
          }
        }
        show(target);
      }));
      syncPassword();
      const bound = userForm.dataset.bound === "true";
      show(bound && userForm.dataset.firstStepErrors === "false" ? "2" : "1");
    }

    // Maintenance → Parameters (also mounted in a site's Settings tab, which a tab switch may
    // swap in later): a successful write answers with the row's Value cell and the event
    // parameter-written: close the dialog; a closed dialog shows "Loading…" again. Listeners
    // sit on the document, so they hold for a dialog that arrives after the page loaded.
    document.body.addEventListener("parameter-written", () => {
      const modal = document.getElementById("parameter-modal");
      if (modal && window.bootstrap) bootstrap.Modal.getOrCreateInstance(modal).hide();
    });
    document.addEventListener("hidden.bs.modal", (event) => {
      const dialog = event.target.id === "parameter-modal"
        && document.getElementById("parameter-dialog");
      if (dialog) dialog.innerHTML = dialog.dataset.loading || "";
    });
    document.addEventListener("show.bs.modal", (event) => {
      const dialog = event.target.id === "parameter-modal"
        && document.getElementById("parameter-dialog");
      if (dialog && dialog.dataset.loading === undefined) dialog.dataset.loading = dialog.innerHTML;
    });
  });
})();
