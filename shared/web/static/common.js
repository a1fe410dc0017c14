// Shared by both clients. Forms with data-confirm ask before they submit
// (delete, withdraw): the question is in the page's language, in the attribute.
"use strict";
document.addEventListener("submit", (event) => {
  const question = event.target.dataset ? event.target.dataset.confirm : null;
  if (question && !window.confirm(question)) event.preventDefault();
});
// "Select all" checkboxes: data-select-all="name of the checkboxes".
document.addEventListener("change", (event) => {
  const name = event.target.dataset ? event.target.dataset.selectAll : null;
  if (!name) return;
  document.querySelectorAll(`input[type=checkbox][name="${name}"]`).forEach((box) => {
    box.checked = event.target.checked;
  });
});
