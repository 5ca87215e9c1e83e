// Minihost action forms: dependent dropdowns and a busy submit button.
// Plain JavaScript, no framework; the page works without it (options for the
// current values are rendered by the server), this only keeps them live.
"use strict";

(function () {
  const form = document.querySelector("form[data-action-form]");
  if (!form) {
    return;
  }

  function field(name) {
    return form.elements.namedItem(name);
  }

  function status(select, text) {
    const help = document.getElementById(select.id + "-help");
    if (help) {
      help.textContent = text;
    }
  }

  function clearError(select) {
    const box = select.closest(".field");
    const old = box && box.querySelector(".source-error");
    if (old) {
      old.remove();
    }
    select.removeAttribute("aria-invalid");
  }

  function placeholder(text) {
    const option = document.createElement("option");
    option.value = "";
    option.textContent = text;
    return option;
  }

  function fill(select, options, previous) {
    const multiple = select.multiple;
    const keep = multiple ? Array.from(select.selectedOptions, (o) => o.value) : [previous];
    select.replaceChildren();
    if (!multiple) {
      select.appendChild(placeholder("— choose —"));
    }
    let kept = 0;
    for (const item of options) {
      const option = document.createElement("option");
      option.value = JSON.stringify(item.value);
      option.textContent = item.label;
      if (keep.includes(option.value)) {
        option.selected = true;
        kept += 1;
      }
      select.appendChild(option);
    }
    const lost = keep.filter((value) => value).length - kept;
    if (lost > 0) {
      select.setAttribute("aria-invalid", "true");
      status(select, "Your earlier choice is not among the options any more: choose again.");
    } else {
      status(select, options.length ? "" : "No options are available.");
    }
  }

  function fail(select, message) {
    if (select.dataset.fallbackAllowed === "true") {
      const input = document.createElement("input");
      input.type = "text";
      input.id = select.id;
      input.name = select.name;
      input.required = select.required;
      input.dataset.fallback = "true";
      input.setAttribute("aria-describedby", select.id + "-help");
      select.replaceWith(input);
      status(input, "The options could not be loaded (" + message + "); type the value instead.");
      return;
    }
    const box = select.closest(".field");
    const error = document.createElement("p");
    error.className = "field-error source-error";
    error.setAttribute("role", "alert");
    error.textContent = message + " ";
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "button-secondary retry";
    retry.dataset.retry = select.id;
    retry.textContent = "Retry";
    error.appendChild(retry);
    box.appendChild(error);
  }

  async function reload(select) {
    const depends = (select.dataset.dependsOn || "").split(" ").filter(Boolean);
    const params = new URLSearchParams();
    for (const name of depends) {
      const input = field(name);
      const value = input ? input.value : "";
      if (!value) {
        select.replaceChildren(placeholder("— choose " + name + " first —"));
        select.dataset.waiting = "true";
        status(select, "");
        return;
      }
      params.set(name, value);
    }
    delete select.dataset.waiting;
    const previous = select.value || select.dataset.chosen || "";
    clearError(select);
    select.setAttribute("aria-busy", "true");
    select.disabled = true;
    status(select, "Loading options…");
    try {
      const response = await fetch(select.dataset.source + "?" + params.toString(), {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      const body = await response.json();
      if (!response.ok) {
        throw new Error(body.detail || response.statusText);
      }
      fill(select, body.options, previous);
    } catch (error) {
      status(select, "");
      fail(select, error.message || "the options could not be loaded");
    } finally {
      select.removeAttribute("aria-busy");
      select.disabled = false;
    }
  }

  for (const select of form.querySelectorAll("select[data-source]")) {
    for (const name of (select.dataset.dependsOn || "").split(" ").filter(Boolean)) {
      const input = field(name);
      if (input) {
        input.addEventListener("change", () => {
          const current = form.querySelector("#" + CSS.escape(select.id));
          if (current && current.tagName === "SELECT") {
            reload(current);
          }
        });
      }
    }
  }

  // A value chosen before this script ran (a quick hand, a restored form) has had no
  // change event heard: load what still waits for a value its fields now have.
  for (const select of form.querySelectorAll("select[data-source][data-waiting]")) {
    const depends = (select.dataset.dependsOn || "").split(" ").filter(Boolean);
    if (depends.length && depends.every((name) => field(name) && field(name).value)) {
      reload(select);
    }
  }

  form.addEventListener("click", (event) => {
    const target = event.target;
    if (target instanceof HTMLButtonElement && target.dataset.retry) {
      const select = document.getElementById(target.dataset.retry);
      if (select) {
        reload(select);
      }
    }
  });

  form.addEventListener("submit", () => {
    const button = form.querySelector("button[type=submit]");
    if (button) {
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
      const spinner = document.createElement("span");
      spinner.className = "spinner";
      spinner.setAttribute("aria-hidden", "true");
      button.replaceChildren(spinner, document.createTextNode(button.dataset.busyText || "…"));
    }
  });
})();
