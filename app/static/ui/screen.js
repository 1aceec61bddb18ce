// vdc web UI: an instance's screen (noVNC) on the Screen page.
// A module script from vdc's own origin (the pages' Content-Security-Policy allows nothing
// else). Each connection asks the server for a one-time ticket first; when the screen goes
// (the guest stopped, the server restarted) the page asks for a new ticket and connects
// again, as long as it stays open.
import RFB from "/static/vendor/novnc/core/rfb.js";

const RETRY_MS = 2000;
const REFUSED_RETRY_MS = 10000;  // the screen could not be reached: ask less often
const holder = document.querySelector("[data-screen]");
const status = document.getElementById("screen-status");
const cad = document.getElementById("screen-cad");
let rfb = null;

function show(state, text) {
  holder.dataset.state = state;
  status.textContent = text;
  cad.disabled = state !== "connected";
}

// A refusal the page cannot get past by asking again (another account's instance, signed out).
class Final extends Error {}

async function newTicket() {
  const response = await fetch(holder.dataset.ticket, {
    method: "POST",
    credentials: "same-origin",
    cache: "no-store",
    headers: { "X-CSRF-Token": holder.dataset.csrf },
  });
  if (response.redirected) throw new Final("Signed out: sign in again to see the screen.");
  let answer = {};
  try { answer = await response.json(); } catch (error) { answer = {}; }
  if (response.ok) return answer.ticket;
  const why = answer.detail || "HTTP " + response.status;
  if (response.status === 403 || response.status === 404) throw new Final(why);
  throw new Error(why);  // 409 (not running) and server troubles: ask again later
}

async function connect() {
  let ticket;
  try {
    ticket = await newTicket();
  } catch (error) {
    if (error instanceof Final) { show("refused", error.message); return; }
    show("waiting", error.message + " Trying again…");
    window.setTimeout(connect, RETRY_MS);
    return;
  }
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const url = scheme + "//" + window.location.host + holder.dataset.socket +
    "?ticket=" + encodeURIComponent(ticket);
  show("connecting", "Connecting…");
  rfb = new RFB(holder, url, { shared: true });
  rfb.scaleViewport = true;
  rfb.focusOnClick = true;
  rfb.background = "#10151c";
  rfb.addEventListener("connect", () => {
    show("connected", "Connected. Click the screen to type.");
    rfb.focus();
  });
  rfb.addEventListener("securityfailure", (event) => {
    show("refused", "No screen: " + (event.detail.reason || "refused"));
  });
  rfb.addEventListener("disconnect", () => {
    rfb = null;
    if (holder.dataset.state === "refused") {
      window.setTimeout(connect, REFUSED_RETRY_MS);
      return;
    }
    show("waiting", "Disconnected. Reconnecting…");
    window.setTimeout(connect, RETRY_MS);
  });
}

cad.addEventListener("click", () => {
  if (rfb) { rfb.sendCtrlAltDel(); rfb.focus(); }
});

connect();
