// The invitation link is /join#<code>: the fragment never reaches a server
// or a log. Put it in the form, wipe it from the address bar and history,
// and submit: the server answers with a session cookie.
"use strict";
(() => {
  const form = document.getElementById("join-form");
  const code = decodeURIComponent(window.location.hash.slice(1));
  if (!form || !code) return;
  history.replaceState(null, "", window.location.pathname);
  form.elements.code.value = code;
  if (form.dataset.auto) form.submit();
})();
