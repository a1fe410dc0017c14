// Live previews and counters while staff write. The counting is the
// server's (POST /console/measure runs the very functions that refuse a
// post too long), so the counter and the refusal always agree.
"use strict";
(() => {
  const form = document.getElementById("compose");
  if (!form) return;
  const field = (name) => form.elements[name];
  const byId = (id) => document.getElementById(id);
  let timer = null;
  let asked = 0;

  const local = () => {
    byId("preview-subject").textContent = field("email_subject").value;
    byId("preview-email").textContent = field("email_body").value;
  };

  const remote = async () => {
    const mine = ++asked;
    const answer = await fetch(form.dataset.measureUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": form.dataset.csrf },
      body: JSON.stringify({ text: field("short_text").value, link: field("link").value || null,
                             body: field("body").value }),
    });
    if (!answer.ok || mine !== asked) return; // a newer question is on its way
    const measured = await answer.json();
    byId("preview-post").textContent = measured.post;
    // sanitized by the server (nh3), and the page's policy runs no inline script
    byId("preview-body").innerHTML = measured.body_html;
    for (const n of measured.networks) {
      const item = document.querySelector(`#counters [data-network="${n.network}"] .counter`);
      if (!item) continue;
      item.textContent = n.count;
      item.classList.toggle("over", !n.fits);
    }
  };

  const changed = () => {
    local();
    clearTimeout(timer);
    timer = setTimeout(remote, 150);
  };
  form.addEventListener("input", changed);
  changed();
})();
