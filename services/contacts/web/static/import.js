// While the import runs, move the progress bar; when it ends, reload the
// page, which then shows the row-by-row report.
"use strict";
(() => {
  const box = document.getElementById("import");
  if (!box || !box.dataset.running) return;
  const bar = document.getElementById("bar");
  const tick = async () => {
    const answer = await fetch(box.dataset.statusUrl, { credentials: "same-origin" });
    if (!answer.ok) return;
    const job = await answer.json();
    bar.value = Math.round(job.progress * 100);
    bar.textContent = `${bar.value} %`;
    if (job.status === "running") setTimeout(tick, 500);
    else window.location.reload();
  };
  setTimeout(tick, 300);
})();
