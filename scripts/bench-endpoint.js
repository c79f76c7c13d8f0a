#!/usr/bin/env node
// A fast OAuth token endpoint for scripts/bench, with Node built-ins only.
//
//   node scripts/bench-endpoint.js --port 0 [--tls cert.pem key.pem] --lifetime 300 \
//        --refresh-at 150 [--spread] [--out stats.json]
//
// Prints the token port on the first line of stdout and the admin port on the second.
//
// Token server (http, or https with --tls): `POST /token` with the refresh grant
// (`grant_type=refresh_token&refresh_token=…&client_id=…` in the form body) answers
// {access_token, token_type, expires_in, refresh_token}. The access token is an unsigned JWT
// (an RS256 header with a dummy signature, the form refreshd decodes) with sub = client_id,
// iat = floor(now) and exp = iat + lifetime. Refresh tokens rotate: only a client's current
// one is accepted (the first one of client X is `r-X`, accepted once); any other answers
// 400 invalid_grant and is counted (refreshd must never spend a stale one). With --spread, a
// client's first token is issued as if at a random second of the last refresh_at (iat moved
// back, exp with it), so the refreshes that follow a cold start come evenly spread, as in a
// fleet whose tokens were issued at different times, instead of in one burst.
//
// Admin server (plain http on 127.0.0.1, a port of its own so that the bench's own requests
// are not counted as the daemon's connections):
//   GET  /admin/stats          totals, and since the last reset: requests, connections,
//                              invalid_grant and lateness samples (arrival − (previous iat +
//                              refresh_at), seconds, for requests scheduled since the reset)
//   POST /admin/reset          starts a new sample window
//   POST /admin/lifetime?s=N   lifetime of the tokens issued from now on
// On SIGTERM/SIGINT it writes the totals and every request record (client, arrival ms,
// previous iat) to --out, then exits.

'use strict';

const http = require('http');
const https = require('https');
const fs = require('fs');
const crypto = require('crypto');

function parseArgs(argv) {
  const opts = { port: 0, lifetime: 300, refreshAt: 150, tls: null, out: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--port') opts.port = Number(argv[++i]);
    else if (a === '--lifetime') opts.lifetime = Number(argv[++i]);
    else if (a === '--refresh-at') opts.refreshAt = Number(argv[++i]);
    else if (a === '--out') opts.out = argv[++i];
    else if (a === '--spread') opts.spread = true;
    else if (a === '--tls') opts.tls = { cert: argv[++i], key: argv[++i] };
    else {
      process.stderr.write(`bench-endpoint: unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
let lifetime = opts.lifetime;

const current = new Map(); // client_id -> the refresh token it must spend next
const lastIat = new Map(); // client_id -> iat of the access token last issued to it
const lastLifetime = new Map(); // client_id -> lifetime of that token
const records = []; // [client_id, arrival ms, previous iat or null]

const totals = { requests: 0, connections: 0, tls_handshakes: 0, invalid_grant: 0, bad_requests: 0 };
let win = null;
function resetWindow() {
  win = { since_ms: Date.now(), requests: 0, connections: 0, invalid_grant: 0, lateness: [] };
}
resetWindow();

const b64 = (s) => Buffer.from(s).toString('base64url');
const JWT_HEADER = b64('{"alg":"RS256","typ":"JWT"}');

function answer(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

function token(req, res, body) {
  const arrival = Date.now();
  totals.requests++;
  win.requests++;
  const form = new URLSearchParams(body);
  const client = form.get('client_id');
  const presented = form.get('refresh_token');
  if (form.get('grant_type') !== 'refresh_token' || !client || !presented) {
    totals.bad_requests++;
    return answer(res, 400, { error: 'invalid_request', error_description: 'need grant_type=refresh_token, client_id, refresh_token' });
  }
  const prevIat = lastIat.has(client) ? lastIat.get(client) : null;
  records.push([client, arrival, prevIat]);
  const expected = current.has(client) ? current.get(client) : `r-${client}`;
  if (presented !== expected) {
    totals.invalid_grant++;
    win.invalid_grant++;
    return answer(res, 400, { error: 'invalid_grant', error_description: 'refresh token is not the current one' });
  }
  // Only refreshes scheduled inside the window: one that came due before it (during a cold
  // start, with --spread) measures the start, not the schedule.
  const scheduled = prevIat === null ? null : prevIat + opts.refreshAt;
  if (scheduled !== null && scheduled * 1000 >= win.since_ms) win.lateness.push(arrival / 1000 - scheduled);
  const now = Math.floor(arrival / 1000);
  const back = opts.spread && prevIat === null ? crypto.randomInt(opts.refreshAt) : 0;
  const iat = now - back;
  const exp = iat + lifetime;
  const payload = b64(JSON.stringify({ sub: client, iat, exp }));
  const next = crypto.randomBytes(18).toString('base64url');
  current.set(client, next);
  lastIat.set(client, iat);
  lastLifetime.set(client, lifetime);
  answer(res, 200, {
    access_token: `${JWT_HEADER}.${payload}.c2lnbmF0dXJl`,
    token_type: 'Bearer',
    expires_in: exp - now,
    refresh_token: next,
  });
}

function handleToken(req, res) {
  if (req.method !== 'POST' || req.url.split('?')[0] !== '/token') {
    totals.bad_requests++;
    return answer(res, 404, { error: 'not_found' });
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => token(req, res, Buffer.concat(chunks).toString('utf8')));
}

function stats() {
  let atLifetime = 0;
  for (const l of lastLifetime.values()) if (l === lifetime) atLifetime++;
  return {
    lifetime,
    refresh_at: opts.refreshAt,
    clients: lastIat.size,
    clients_at_lifetime: atLifetime,
    totals,
    window: win,
  };
}

function handleAdmin(req, res) {
  const url = new URL(req.url, 'http://localhost');
  if (req.method === 'GET' && url.pathname === '/admin/stats') return answer(res, 200, stats());
  if (req.method === 'POST' && url.pathname === '/admin/reset') {
    resetWindow();
    return answer(res, 200, { ok: true });
  }
  if (req.method === 'POST' && url.pathname === '/admin/lifetime') {
    const s = Number(url.searchParams.get('s'));
    if (!Number.isInteger(s) || s <= 0) return answer(res, 400, { error: 's must be a positive integer' });
    lifetime = s;
    return answer(res, 200, { lifetime });
  }
  answer(res, 404, { error: 'not_found' });
}

const server = opts.tls
  ? https.createServer({ cert: fs.readFileSync(opts.tls.cert), key: fs.readFileSync(opts.tls.key) }, handleToken)
  : http.createServer(handleToken);
server.on('connection', () => {
  totals.connections++;
  win.connections++;
});
server.on('secureConnection', () => totals.tls_handshakes++);
// Room for a large fleet refreshing at once; keep-alive stays Node's default (5 s).
server.maxConnections = 100000;
const admin = http.createServer(handleAdmin);

function stop() {
  if (opts.out) {
    fs.writeFileSync(opts.out, JSON.stringify({ ...stats(), records }));
  }
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

server.listen(opts.port, '127.0.0.1', () => {
  admin.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${server.address().port}\n${admin.address().port}\n`);
  });
});
