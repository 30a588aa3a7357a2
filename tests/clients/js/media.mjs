// Media through matrix-js-sdk, the way Element Web does it: upload with `uploadContent`, then
// download and thumbnail the authenticated URLs `mxcUrlToHttp(..., useAuthentication = true)`
// gives, with the access token as a bearer header.
//
//   node tests/clients/js/media.mjs '<json config>'
//
// The config names the base URL, an uploader and a viewer ({user_id, access_token, device_id},
// registered by the test) and the files to upload ({path, type}). Prints one JSON line with, per
// file, the SHA-256 of the bytes the viewer downloaded, their Content-Type and
// Content-Disposition; the first image's 64x64 crop thumbnail as hex; and the status of a download
// without a token. Exits 1 on any failure.

import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { basename } from "node:path";

import { createClient } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel("silent");
const config = JSON.parse(process.argv[2]);

function client(user) {
  return createClient({
    baseUrl: config.baseUrl,
    userId: user.user_id,
    accessToken: user.access_token,
    deviceId: user.device_id,
  });
}

async function authenticatedGet(viewer, url) {
  const response = await fetch(url, { headers: { Authorization: `Bearer ${viewer.getAccessToken()}` } });
  if (!response.ok) throw new Error(`GET ${url}: ${response.status} ${await response.text()}`);
  return response;
}

try {
  const uploader = client(config.uploader);
  const viewer = client(config.viewer);
  const files = [];
  let firstImage;
  for (const file of config.files) {
    const data = await readFile(file.path);
    const { content_uri: mxc } = await uploader.uploadContent(new Blob([data], { type: file.type }), {
      name: basename(file.path),
      type: file.type,
    });
    if (!mxc?.startsWith("mxc://")) throw new Error(`uploadContent gave ${mxc}`);
    if (!firstImage && file.type.startsWith("image/")) firstImage = mxc;
    const url = viewer.mxcUrlToHttp(mxc, undefined, undefined, undefined, false, true, true);
    const response = await authenticatedGet(viewer, url);
    const bytes = Buffer.from(await response.arrayBuffer());
    files.push({
      mxc,
      sha256: createHash("sha256").update(bytes).digest("hex"),
      contentType: response.headers.get("content-type"),
      disposition: response.headers.get("content-disposition"),
    });
  }
  const thumbUrl = viewer.mxcUrlToHttp(firstImage, 64, 64, "crop", false, true, true);
  const thumb = await authenticatedGet(viewer, thumbUrl);
  const thumbnail = {
    contentType: thumb.headers.get("content-type"),
    hex: Buffer.from(await thumb.arrayBuffer()).toString("hex"),
  };
  const anonymous = await fetch(viewer.mxcUrlToHttp(firstImage, undefined, undefined, undefined, false, true, true));
  console.log(JSON.stringify({ files, thumbnail, unauthenticatedStatus: anonymous.status }));
  process.exit(0);
} catch (err) {
  console.error(err?.stack ?? String(err));
  process.exit(1);
}
