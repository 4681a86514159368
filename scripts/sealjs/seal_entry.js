// meshdrop's sealing in the browser (issue 18, "The first hop is the weak one"): the
// write page's report sealed into a drop exactly as meshdrop/core/drops.py seals it
// (docs/FORMAT.md sections 20-21), so that the node only ever receives the sealed drop.
// Built into meshdrop/reader/static/seal.js by scripts/build_seal_js.sh.
//
// Works outside a "secure context" too (plain HTTP from a phone, where crypto.subtle
// does not exist): the HKDF and AES-256-GCM under hpke-js are noble's pure code, and
// the only browser crypto used is crypto.getRandomValues.
import { CipherSuite } from "@hpke/core";
import { AeadId, Dhkem, HkdfSha256Native, KemId } from "@hpke/common";
import { X25519 } from "@hpke/dhkem-x25519";
import { XWing } from "@hpke/hybridkem-x-wing";
import { gcm } from "@noble/ciphers/aes.js";
import { expand, extract } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";

const KIB = 1024;
const MIB = 1024 * 1024;
const SIZE_CLASSES = [16 * KIB, 64 * KIB, 256 * KIB, 1 * MIB, 4 * MIB, 16 * MIB];
const HEADER_BYTES = 9;
const STAMP_BYTES = 8;
const LENGTH_BYTES = 4;
const TAG_BYTES = 16;
const ENC_BYTES = { "mlkem768-x25519": 1120, x25519: 32 };
const TEXT_MAX_BYTES = 64 * KIB;
const ATTACHMENTS_MAX = 8;
const ATTACHMENTS_MAX_BYTES = 8 * MIB;
const RECEIPT_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const utf8 = new TextEncoder();
const INFO_PREFIX = utf8.encode("meshdrop/v1/drop\0");
const STAMP_PREFIX = utf8.encode("meshdrop/v1/drop-stamp\0");
const STAMP_STEP = 4096; // tries between two progress reports

const bytes = (b) => (b instanceof Uint8Array ? b : new Uint8Array(b));
const buffer = (u) => u.buffer.slice(u.byteOffset, u.byteOffset + u.byteLength);

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

// HKDF-SHA256 and AES-256-GCM as hpke-js wants them, in pure code (no crypto.subtle).
class PureHkdfSha256 extends HkdfSha256Native {
  async extract(salt, ikm) {
    const s = bytes(salt);
    return buffer(extract(sha256, bytes(ikm), s.length ? s : new Uint8Array(32)));
  }
  async expand(prk, info, len) {
    return buffer(expand(sha256, bytes(prk), bytes(info), len));
  }
  async extractAndExpand(salt, ikm, info, len) {
    return this.expand(await this.extract(salt, ikm), info, len);
  }
}

class PureAes256Gcm {
  constructor() {
    this.id = AeadId.Aes256Gcm;
    this.keySize = 32;
    this.nonceSize = 12;
    this.tagSize = 16;
  }
  createEncryptionContext(key) {
    const k = bytes(key).slice();
    return {
      seal: async (iv, data, aad) => buffer(gcm(k, bytes(iv), bytes(aad)).encrypt(bytes(data))),
      open: async (iv, data, aad) => buffer(gcm(k, bytes(iv), bytes(aad)).decrypt(bytes(data))),
    };
  }
}

class PureDhkemX25519 extends Dhkem {
  constructor() {
    const kdf = new PureHkdfSha256();
    super(KemId.DhkemX25519HkdfSha256, new X25519(kdf), kdf);
    Object.assign(this, { secretSize: 32, encSize: 32, publicKeySize: 32, privateKeySize: 32 });
  }
}

function suiteFor(name) {
  const kem = name === "mlkem768-x25519" ? new XWing() : new PureDhkemX25519();
  return new CipherSuite({ kem, kdf: new PureHkdfSha256(), aead: new PureAes256Gcm() });
}

// Canonical msgpack (FORMAT section 3) of the few types a report has: str, bin, array
// and map, lengths minimal, map keys sorted by their encoded bytes.
function head(small, base, widths, n) {
  if (small !== null && n < small) return Uint8Array.of(base | n);
  for (const [limit, code, size] of widths) {
    if (n < limit) {
      const out = new Uint8Array(1 + size);
      out[0] = code;
      for (let i = 0; i < size; i++) out[size - i] = Math.floor(n / 256 ** i) % 256;
      return out;
    }
  }
  throw new RangeError("too long for msgpack");
}
const U32 = 2 ** 32;
function packStr(s) {
  const b = utf8.encode(s);
  return concat(head(32, 0xa0, [[256, 0xd9, 1], [65536, 0xda, 2], [U32, 0xdb, 4]], b.length), b);
}
const packBin = (b) => concat(head(null, 0, [[256, 0xc4, 1], [65536, 0xc5, 2], [U32, 0xc6, 4]], b.length), b);
const packArray = (items) => concat(head(16, 0x90, [[65536, 0xdc, 2], [U32, 0xdd, 4]], items.length), ...items);
function packMap(entries) {
  const packed = entries.map(([k, v]) => [packStr(k), v]);
  packed.sort(([a], [b]) => {
    for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
    return a.length - b.length;
  });
  return concat(head(16, 0x80, [[65536, 0xde, 2], [U32, 0xdf, 4]], packed.length), ...packed.flat());
}

export function encodeReport(report) {
  if (utf8.encode(report.text).length > TEXT_MAX_BYTES) throw new RangeError("text");
  if (report.attachments.length > ATTACHMENTS_MAX) throw new RangeError("files");
  const total = report.attachments.reduce((n, a) => n + a.data.length, 0);
  if (total > ATTACHMENTS_MAX_BYTES) throw new RangeError("files");
  const attachments = report.attachments.map((a) =>
    packMap([["name", packStr(a.name)], ["media_type", packStr(a.media_type)], ["data", packBin(a.data)]]),
  );
  return packMap([
    ["text", packStr(report.text)],
    ["attachments", packArray(attachments)],
    ["receipt", packStr(report.receipt)],
  ]);
}

export function makeReceipt() {
  const random = crypto.getRandomValues(new Uint8Array(5));
  let bits = 0n;
  for (const b of random) bits = (bits << 8n) | BigInt(b);
  let code = "";
  for (let i = 7; i >= 0; i--) code += RECEIPT_ALPHABET[Number((bits >> BigInt(5 * i)) & 31n)];
  return code;
}

function stamped(digest, bits) {
  const whole = bits >> 3;
  for (let i = 0; i < whole; i++) if (digest[i] !== 0) return false;
  const rest = bits & 7;
  return rest === 0 || digest[whole] >> (8 - rest) === 0;
}

// The first nonce, counting up from 0, whose stamp hash starts with `bits` zero bits.
export async function findStamp(body, bits, progress) {
  const start = sha256.create().update(STAMP_PREFIX).update(sha256(body));
  const nonce = new Uint8Array(STAMP_BYTES);
  const view = new DataView(nonce.buffer);
  for (let counter = 0; ; counter++) {
    view.setUint32(0, Math.floor(counter / U32));
    view.setUint32(4, counter % U32);
    if (stamped(start.clone().update(nonce).digest(), bits)) return nonce;
    if (counter % STAMP_STEP === STAMP_STEP - 1 && progress) await progress(counter + 1);
  }
}

// The drop of `report` sealed to the report key (`suite`, raw `publicKey`), living until
// `expiry` (Unix seconds), stamped with `bits`. `ekm`: fixed HPKE randomness, for tests.
export async function sealDrop(report, suite, publicKey, expiry, bits, progress, ekm) {
  const encoded = encodeReport(report);
  const encBytes = ENC_BYTES[suite];
  const needed = HEADER_BYTES + encBytes + LENGTH_BYTES + encoded.length + TAG_BYTES + STAMP_BYTES;
  const size = SIZE_CLASSES.find((s) => needed <= s);
  if (size === undefined) throw new RangeError("files");
  const plaintext = new Uint8Array(size - HEADER_BYTES - STAMP_BYTES - encBytes - TAG_BYTES);
  new DataView(plaintext.buffer).setUint32(0, encoded.length);
  plaintext.set(encoded, LENGTH_BYTES);
  const header = new Uint8Array(HEADER_BYTES);
  header[0] = 1;
  new DataView(header.buffer).setUint32(1, Math.floor(expiry / U32));
  new DataView(header.buffer).setUint32(5, expiry % U32);
  const hpke = suiteFor(suite);
  const recipientPublicKey = await hpke.kem.deserializePublicKey(buffer(bytes(publicKey)));
  const params = { recipientPublicKey, info: buffer(concat(INFO_PREFIX, header)) };
  if (ekm) params.ekm = ekm;
  const sealed = await hpke.seal(params, buffer(plaintext));
  const body = concat(header, bytes(sealed.enc), bytes(sealed.ct));
  return concat(body, await findStamp(body, bits, progress));
}

// The write page

const JPEG_QUALITY = 0.9;

async function cleanedPicture(file) {
  // Drawn again through a canvas: only the pixels survive, no EXIF, no GPS.
  const picture = await createImageBitmap(file, { imageOrientation: "from-image" });
  const canvas = document.createElement("canvas");
  canvas.width = picture.width;
  canvas.height = picture.height;
  canvas.getContext("2d").drawImage(picture, 0, 0);
  picture.close();
  const blob = await new Promise((done) => canvas.toBlob(done, "image/jpeg", JPEG_QUALITY));
  if (!blob) throw new Error("picture");
  return new Uint8Array(await blob.arrayBuffer());
}

function fromBase64(text) {
  const raw = atob(text);
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function show(page, html) {
  const fresh = new DOMParser().parseFromString(html, "text/html");
  document.body.replaceWith(document.adoptNode(fresh.body));
  window.scrollTo(0, 0);
}

function startWritePage() {
  const form = document.querySelector("form.write[data-key]");
  if (!form) return;
  const said = (name) => form.dataset[name] || "";
  const status = document.getElementById("seal-status");
  const say = (text) => {
    status.textContent = text;
    status.hidden = !text;
  };
  for (const hidden of document.querySelectorAll("[data-with-script]")) hidden.hidden = false;
  for (const shown of document.querySelectorAll("[data-without-script]")) shown.hidden = true;
  form.hidden = false;
  const files = form.querySelector('input[type="file"]');
  files.accept = "image/jpeg,image/png,image/webp,image/gif";
  let busy = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    const text = form.querySelector("textarea").value;
    const chosen = Array.from(files.files);
    if (!text.trim() && chosen.length === 0) return say(said("msgEmpty"));
    if (chosen.some((f) => !f.type.startsWith("image/"))) return say(said("msgKind"));
    busy = true;
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      say(said("msgPictures"));
      const attachments = [];
      for (const [i, file] of chosen.entries()) {
        attachments.push({ name: `photo-${i + 1}.jpg`, media_type: "image/jpeg", data: await cleanedPicture(file) });
      }
      const report = { text, attachments, receipt: makeReceipt() };
      say(said("msgSealing"));
      let drop;
      try {
        drop = await sealDrop(
          report, said("suite"), fromBase64(said("key")), Number(said("expiry")), Number(said("stampBits")),
          async (tries) => {
            say(`${said("msgStamping")} ${tries.toLocaleString()}`);
            await new Promise((next) => setTimeout(next, 0));
          },
        );
      } catch (error) {
        if (error instanceof RangeError) return say(said("msgTooBig"));
        throw error;
      }
      say(said("msgSending"));
      const answer = await fetch(form.action, {
        method: "POST",
        body: drop,
        headers: { "Content-Type": "application/octet-stream", "Receipt-Code": report.receipt },
        credentials: "same-origin",
        cache: "no-store",
      });
      show(form, await answer.text());
    } catch (error) {
      say(said("msgFailed"));
    } finally {
      busy = false;
      button.disabled = false;
    }
  });
}

if (typeof document !== "undefined") {
  window.reportSeal = { sealDrop, encodeReport, makeReceipt, findStamp };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startWritePage);
  else startWritePage();
}
