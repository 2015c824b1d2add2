// GraphQL-over-HTTP audit (graphql-http's auditServer) against a running gateway.
//
//   node audit.mjs URL            with GATEWAY_AUDIT_TOKEN=<bearer JWT> in the environment
//
// Prints one line per audit, then a JSON summary line starting with "SUMMARY " that
// tests/gateway/test_http_audit.py reads. Exit status 0 when every MUST and SHOULD passes.
// graphql-http/lib/audits/server is not an exported subpath; the package root re-exports it.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
const token = process.env.GATEWAY_AUDIT_TOKEN;
if (!url || !token) {
  console.error('usage: GATEWAY_AUDIT_TOKEN=<jwt> node audit.mjs <url>');
  process.exit(2);
}

// Every /graphql request needs a bearer token: add it to each request the audit makes.
function fetchWithToken(input, init = {}) {
  const headers = new Headers(init.headers || {});
  headers.set('authorization', `Bearer ${token}`);
  return fetch(input, { ...init, headers });
}

const results = await auditServer({ url, fetchFn: fetchWithToken });
const counts = {};
for (const level of ['MUST', 'SHOULD', 'MAY']) {
  const mine = results.filter((r) => r.name.startsWith(level));
  counts[level] = { passed: mine.filter((r) => r.status === 'ok').length, total: mine.length };
}
for (const r of results) {
  const mark = r.status === 'ok' ? 'ok  ' : r.status;
  console.log(`${mark} ${r.id} ${r.name}${r.status === 'ok' ? '' : ` -- ${r.reason}`}`);
}
console.log('SUMMARY ' + JSON.stringify(counts));
const failing = ['MUST', 'SHOULD'].some((l) => counts[l].passed !== counts[l].total);
process.exit(failing ? 1 : 0);
