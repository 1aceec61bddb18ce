// vdc web UI: confirmations, the user-data size, live instance states, upload progress,
// timestamps in the reader's time zone.
// No framework and no inline script (the pages' Content-Security-Policy forbids it).
"use strict";

// Forms with data-confirm ask first (stop, reboot, terminate, delete).
document.addEventListener("submit", (event) => {
  const question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});

// The user-data textarea shows its size in bytes (UTF-8), as the limit counts them.
function watchByteCounts() {
  for (const counter of document.querySelectorAll("[data-byte-count-for]")) {
    const field = document.getElementById(counter.getAttribute("data-byte-count-for"));
    if (!field) continue;
    const limit = Number(field.getAttribute("data-byte-limit"));
    const update = () => {
      const size = new TextEncoder().encode(field.value.replace(/\r\n/g, "\n")).length;
      counter.textContent = String(size);
      counter.parentElement.classList.toggle("field-error", limit > 0 && size > limit);
    };
    field.addEventListener("input", update);
    update();
  }
}

// Instance states change in the background (the job worker): poll and redraw them.
function watchStates() {
  const holder = document.querySelector("[data-live-states], [data-live-state]");
  if (!holder) return;
  const url = holder.getAttribute("data-live-states") || holder.getAttribute("data-live-state");
  const single = holder.hasAttribute("data-live-state");
  const rows = () => (single ? [holder] : holder.querySelectorAll("[data-id]"));
  const draw = (cell, state, reason) => {
    const badge = document.createElement("span");
    badge.className = "state state-" + state;
    badge.textContent = state;
    cell.replaceChildren(badge);
    if (state === "error" && reason && !single) {
      const why = document.createElement("small");
      why.className = "reason";
      why.textContent = reason;
      cell.append(document.createElement("br"), why);
    }
  };
  const poll = async () => {
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) {
        const states = await response.json();
        let changed = false;
        for (const row of rows()) {
          const now = states[row.getAttribute("data-id")];
          const cell = row.querySelector(".live-state");
          if (!now || !cell) continue;
          if (cell.textContent.trim().split(/\s/)[0] !== now.state) changed = true;
          draw(cell, now.state, now.reason);
          const ip = row.querySelector(".live-ip");
          if (ip) ip.textContent = now.ip;
        }
        // A detail page's buttons depend on the state: reload it once the state moved.
        if (single && changed) window.location.reload();
      }
    } catch (error) {
      // The server restarting: try again at the next tick.
    }
    window.setTimeout(poll, 1500);
  };
  window.setTimeout(poll, 1500);
}

// Image upload: the file goes as the raw body, so the progress bar can follow it.
function watchUpload() {
  const form = document.querySelector("form[data-upload]");
  if (!form) return;
  const bar = form.querySelector("progress");
  const status = document.getElementById("upload-status");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = form.querySelector("input[type=file]").files[0];
    if (!file) { status.textContent = "Choose a file first."; return; }
    const query = new URLSearchParams({
      arch: form.elements.arch.value,
      display_name: form.elements.display_name.value,
      description: form.elements.description.value,
      is_public: form.elements.is_public && form.elements.is_public.checked ? "true" : "false",
      metadata_drive: form.elements.metadata_drive.checked ? "true" : "false",
    });
    const request = new XMLHttpRequest();
    request.open("POST", form.getAttribute("data-upload") + "?" + query.toString());
    request.setRequestHeader("Content-Type", "application/octet-stream");
    request.setRequestHeader("X-CSRF-Token", form.getAttribute("data-csrf"));
    request.upload.addEventListener("progress", (progress) => {
      if (!progress.lengthComputable) return;
      const percent = Math.round((100 * progress.loaded) / progress.total);
      bar.value = percent;
      bar.textContent = percent + "%";
      status.textContent = "Uploading: " + percent + "%";
    });
    request.addEventListener("load", () => {
      let answer = {};
      try { answer = JSON.parse(request.responseText); } catch (error) { answer = {}; }
      if (request.status === 201) {
        bar.value = 100;
        window.location.assign("/images?notice=" + encodeURIComponent("registered " + answer.id));
      } else {
        status.textContent = "Refused: " + (answer.detail || "HTTP " + request.status);
        status.classList.add("field-error");
      }
    });
    request.addEventListener("error", () => { status.textContent = "The upload failed (connection lost)."; });
    status.classList.remove("field-error");
    status.textContent = "Uploading…";
    request.send(file);
  });
}

// Timestamps (<time datetime> from app/web/timestamps.py) in the reader's own time zone;
// in lists ([data-relative]) as an age kept current. The title keeps the exact value.
const EXACT = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric",
  hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
});

// The same words as app/web/timestamps.py's age(): keep the two alike.
function age(date, now) {
  const seconds = (now - date.getTime()) / 1000;
  if (seconds < 45) return "just now";
  const minutes = Math.floor(seconds / 60);
  if (minutes < 45) return Math.max(minutes, 1) + " min ago";
  const hours = Math.floor(seconds / 3600);
  if (hours < 24) return Math.max(hours, 1) + " h ago";
  const days = Math.floor(seconds / 86400);
  if (days < 30) return days === 1 ? "1 day ago" : days + " days ago";
  return date.toLocaleDateString();
}

function showTimes() {
  const times = [];
  for (const element of document.querySelectorAll("time[datetime]")) {
    const date = new Date(element.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) continue;
    const local = EXACT.format(date);
    element.title = local + " (" + element.title + ")";  // the server's exact UTC value
    if (element.hasAttribute("data-relative")) times.push([element, date]);
    else element.textContent = local;
  }
  const redraw = () => {
    const now = Date.now();
    for (const [element, date] of times) element.textContent = age(date, now);
  };
  redraw();
  if (times.length) window.setInterval(redraw, 20000);
}

document.addEventListener("DOMContentLoaded", () => {
  showTimes();
  watchByteCounts();
  watchStates();
  watchUpload();
});
