// Destructive actions ask first: a form with data-confirm submits only once the
// person agrees to the message, which names what will be lost. Without script the
// form submits as before (the server does not depend on this).
"use strict";

document.addEventListener("submit", function (event) {
  const form = event.target;
  const message = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});
