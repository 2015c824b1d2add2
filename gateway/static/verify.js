// The /verify page: checks a certificate (a compact JWS) in the browser with WebCrypto,
// against the gateway's published keys and its signed revocation list. The same rules as
// gateway/certificates.py `verify`: strict base64url, typ, a published kid, its algorithm,
// the signature, then expiry and revocation.
"use strict";

const CERTIFICATE_TYP = "rg-certificate+jwt";
const REVOCATIONS_TYP = "rg-revocations+jwt";
const KINDS = ["RESIDENT_REGISTRATION", "HOUSEHOLD_COMPOSITION", "TAX_PAYMENT", "HEALTH_INSURANCE"];
const KIND_TITLES = {
  RESIDENT_REGISTRATION: "Resident registration abstract",
  HOUSEHOLD_COMPOSITION: "Household composition",
  TAX_PAYMENT: "Tax payment",
  HEALTH_INSURANCE: "Health insurance enrolment",
};
const LEEWAY_S = 300;
const SHOWN_LAST = ["iss", "jti", "iat", "exp", "kind"];

class Refused extends Error {}

function b64url(segment) {
  if (!/^[A-Za-z0-9_-]*$/.test(segment)) throw new Refused("it is not base64url text");
  const padded = segment.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((segment.length + 3) % 4);
  let text;
  try { text = atob(padded); } catch (e) { throw new Refused("it is not base64url text"); }
  const bytes = Uint8Array.from(text, (c) => c.charCodeAt(0));
  // Canonical only: two different texts must never carry the same bytes.
  const again = btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  if (again !== segment) throw new Refused("it is not in canonical base64url");
  return bytes;
}

function json(bytes) {
  return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
}

async function importKey(jwk) {
  if (jwk.kty === "OKP" && jwk.crv === "Ed25519") {
    return crypto.subtle.importKey("jwk", { kty: "OKP", crv: "Ed25519", x: jwk.x },
      { name: "Ed25519" }, false, ["verify"]);
  }
  if (jwk.kty === "EC" && jwk.crv === "P-256") {
    return crypto.subtle.importKey("jwk", { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y },
      { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
  }
  throw new Refused("its key is of a kind this page does not know");
}

async function openJws(token, jwks, typ) {
  const parts = token.trim().split(".");
  if (parts.length !== 3 || parts.some((p) => p === "")) {
    throw new Refused("it is not a compact JWS (three dot-separated parts)");
  }
  let header, payload, signature;
  try {
    header = json(b64url(parts[0]));
    payload = b64url(parts[1]);
    signature = b64url(parts[2]);
  } catch (e) {
    throw new Refused(e instanceof Refused ? e.message : "its header is unreadable");
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw new Refused("its header is not a JSON object");
  }
  if (header.typ !== typ) throw new Refused(`it is not a ${typ}`);
  const jwk = (jwks.keys || []).find((k) => k && k.kid === header.kid);
  if (typeof header.kid !== "string" || !jwk) {
    throw new Refused(`no published key has its kid ${JSON.stringify(header.kid)}`);
  }
  if (!["Ed25519", "ES256"].includes(header.alg) || (jwk.alg && jwk.alg !== header.alg)) {
    throw new Refused("its algorithm is not the key's");
  }
  const key = await importKey(jwk);
  const algorithm = header.alg === "ES256" ? { name: "ECDSA", hash: "SHA-256" } : { name: "Ed25519" };
  const signed = new TextEncoder().encode(parts[0] + "." + parts[1]);
  if (!(await crypto.subtle.verify(algorithm, key, signature, signed))) {
    throw new Refused("its signature does not match");
  }
  let claims;
  try { claims = json(payload); } catch (e) { throw new Refused("its payload is not JSON"); }
  if (claims === null || typeof claims !== "object" || Array.isArray(claims)) {
    throw new Refused("its payload is not a JSON object");
  }
  return claims;
}

async function fetchText(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.text();
}

async function check(token) {
  if (!window.crypto || !crypto.subtle) {
    return { outcome: "invalid", reason: "This browser cannot check signatures here (WebCrypto needs https)." };
  }
  const jwks = JSON.parse(await fetchText("/.well-known/jwks.json"));
  let claims;
  try {
    claims = await openJws(token, jwks, CERTIFICATE_TYP);
  } catch (e) {
    if (!(e instanceof Refused)) throw e;
    return { outcome: "invalid", reason: `Not a genuine certificate: ${e.message}.` };
  }
  const now = Date.now() / 1000;
  if (!Number.isInteger(claims.iat) || !Number.isInteger(claims.exp) || typeof claims.jti !== "string"
      || typeof claims.iss !== "string" || !KINDS.includes(claims.kind)) {
    return { outcome: "invalid", reason: "Signed, but not a certificate (claims missing)." };
  }
  if (claims.iat > now + LEEWAY_S) {
    return { outcome: "invalid", reason: "Signed, but issued in the future.", claims };
  }
  let revoked = null;
  let listedAt = null;
  try {
    const list = await openJws(await fetchText("/.well-known/revocations.jwt"), jwks, REVOCATIONS_TYP);
    if (list.iss !== claims.iss || !Array.isArray(list.revoked)) throw new Refused("another issuer's list");
    revoked = new Set(list.revoked);
    listedAt = list.iat;
  } catch (e) {
    revoked = null;
  }
  if (claims.exp <= now) {
    return { outcome: "expired", reason: `Genuine, but it expired on ${when(claims.exp)}.`, claims };
  }
  if (revoked !== null && revoked.has(claims.jti)) {
    return { outcome: "revoked", reason: "Genuine, but its holder revoked it.", claims };
  }
  const checked = revoked === null ? " (the revocation list could not be checked)"
    : ` (not revoked as of ${when(listedAt)})`;
  return { outcome: "genuine", reason: `Genuine${checked}.`, claims };
}

function when(epoch) {
  return new Date(epoch * 1000).toISOString().replace("T", " ").replace(/:\d\d\.\d+Z$/, " UTC");
}

const LABELS = { rrn: "RRN (masked)", jti: "Certificate id" };

function label(key) {
  if (LABELS[key]) return LABELS[key];
  const spaced = key.replace(/[A-Z]/g, (c) => " " + c.toLowerCase());
  return spaced.charAt(0).toUpperCase() + spaced.slice(1);
}

function valueNode(value) {
  if (Array.isArray(value)) {
    if (value.length === 0) return document.createTextNode("none");
    const list = document.createElement("ol");
    for (const item of value) {
      const li = document.createElement("li");
      li.appendChild(valueNode(item));
      list.appendChild(li);
    }
    return list;
  }
  if (value !== null && typeof value === "object") {
    const table = document.createElement("table");
    table.className = "nested";
    for (const [k, v] of Object.entries(value)) table.appendChild(row(k, v));
    return table;
  }
  if (typeof value === "boolean") return document.createTextNode(value ? "yes" : "no");
  return document.createTextNode(value === null ? "-" : String(value));
}

function row(key, value) {
  const tr = document.createElement("tr");
  const th = document.createElement("th");
  th.textContent = label(key);
  const td = document.createElement("td");
  td.appendChild(valueNode(value));
  tr.append(th, td);
  return tr;
}

const TITLES = { genuine: "Genuine", expired: "Expired", revoked: "Revoked", invalid: "Not valid" };

function render(result, token) {
  const section = document.getElementById("result");
  const verdict = document.getElementById("verdict");
  verdict.className = "status " + result.outcome;
  verdict.dataset.outcome = result.outcome;
  const claims = result.claims;
  verdict.textContent = TITLES[result.outcome] + (claims && KIND_TITLES[claims.kind] ? ": " + KIND_TITLES[claims.kind] : "");
  document.getElementById("reason").textContent = result.reason;
  const contents = document.getElementById("contents");
  contents.replaceChildren();
  const meta = document.getElementById("meta");
  meta.textContent = "";
  const printForm = document.getElementById("print-form");
  printForm.hidden = !claims;
  if (claims) {
    for (const [k, v] of Object.entries(claims)) if (!SHOWN_LAST.includes(k)) contents.appendChild(row(k, v));
    meta.textContent = `Certificate ${claims.jti}, issued by ${claims.iss} on ${when(claims.iat)}, valid until ${when(claims.exp)}.`;
    document.getElementById("print-token").value = token.trim();
  }
  section.hidden = false;
}

async function run(token) {
  try {
    render(await check(token), token);
  } catch (e) {
    render({ outcome: "invalid", reason: `Could not check it: ${e.message}` }, token);
  }
}

function decodeQr(source, width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(source, 0, 0, width, height);
  const image = context.getImageData(0, 0, width, height);
  const code = jsQR(image.data, width, height);
  return code ? code.data : null;
}

async function openFile(file) {
  const area = document.getElementById("token");
  if (file.type.startsWith("image/")) {
    const bitmap = await createImageBitmap(file);
    const text = decodeQr(bitmap, bitmap.width, bitmap.height);
    if (text === null) {
      render({ outcome: "invalid", reason: "No QR code could be read in that image." }, "");
      return;
    }
    area.value = text;
  } else {
    area.value = (await file.text()).trim();
  }
  await run(area.value);
}

let scanning = null;

async function scan() {
  const video = document.getElementById("video");
  if (scanning) {
    scanning.getTracks().forEach((t) => t.stop());
    scanning = null;
    video.hidden = true;
    return;
  }
  try {
    scanning = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
  } catch (e) {
    render({ outcome: "invalid", reason: `The camera could not be opened: ${e.message}` }, "");
    return;
  }
  video.srcObject = scanning;
  video.hidden = false;
  await video.play();
  const tick = async () => {
    if (!scanning) return;
    if (video.videoWidth > 0) {
      const text = decodeQr(video, video.videoWidth, video.videoHeight);
      if (text !== null) {
        scanning.getTracks().forEach((t) => t.stop());
        scanning = null;
        video.hidden = true;
        document.getElementById("token").value = text;
        await run(text);
        return;
      }
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("check-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(document.getElementById("token").value);
  });
  document.getElementById("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) openFile(file);
  });
  document.getElementById("camera").addEventListener("click", scan);
  document.body.dataset.ready = "true";
});
