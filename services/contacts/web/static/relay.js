// While emails and posts go out, refresh the counts of each channel every
// two seconds (statuses stay as the page rendered them until a reload).
"use strict";
(() => {
  const box = document.getElementById("relay");
  if (!box || !box.dataset.pending) return;
  const refresh = async () => {
    const answer = await fetch(box.dataset.statusUrl, { credentials: "same-origin" });
    if (!answer.ok) return;
    const relay = await answer.json();
    let pending = false;
    for (const [name, channel] of Object.entries(relay.channels)) {
      const section = box.querySelector(`[data-channel="${name}"]`);
      if (!section) continue;
      for (const field of ["queued", "delivered", "failed"]) {
        const cell = section.querySelector(`[data-field="${field}"]`);
        if (cell) cell.textContent = channel[field];
      }
      pending = pending || channel.status === "sending" || channel.status === "queued";
    }
    if (pending) setTimeout(refresh, 2000);
    else window.location.reload(); // final statuses, in the page's language
  };
  setTimeout(refresh, 2000);
})();
