// The server's API as the page uses it: the token (this tab's session storage only), JSON
// calls that carry it, and the live feed (Server-Sent Events read through fetch, because
// EventSource cannot send an Authorization header).

const KEY = 'weir.token';

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

/** A 401: the token is missing, malformed, badly signed or expired. */
export class Unauthorized extends Error {}

function headers() {
  const t = token();
  return t ? { authorization: `Bearer ${t}` } : {};
}

/** The `message` of the server's `{"error": {...}}` body, or a fallback. */
export function reason(data, status) {
  if (data && data.error && data.error.message) return data.error.message;
  if (typeof data === 'string' && data) return data;
  return `HTTP ${status}`;
}

/** One call: `{status, data}`; throws Unauthorized on 401. */
export async function call(method, path) {
  const r = await fetch(path, { method, headers: headers() });
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (r.status === 401) throw new Unauthorized(reason(data, r.status));
  return { status: r.status, data };
}

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

/**
 * Follows `GET /v1/events`: calls onSnapshot(snapshot) for each pushed snapshot, onState(true |
 * false) as the connection comes and goes (it reconnects after 2 s), onUnauthorized(reason) on
 * a 401 (then stops). Returns an AbortController that ends it.
 */
export function subscribe(onSnapshot, onState, onUnauthorized) {
  const ctrl = new AbortController();
  (async () => {
    while (!ctrl.signal.aborted) {
      try {
        const r = await fetch('/v1/events', { headers: headers(), signal: ctrl.signal });
        if (r.status === 401) {
          onUnauthorized(reason(await r.json().catch(() => null), 401));
          return;
        }
        if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
        onState(true);
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value.replace(/\r\n?/g, '\n');
          let end;
          while ((end = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, end);
            buf = buf.slice(end + 2);
            let event = 'message';
            const data = [];
            for (const line of block.split('\n')) {
              if (line.startsWith('event:')) event = line.slice(6).trim();
              else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
            }
            if (event === 'snapshot' && data.length) onSnapshot(JSON.parse(data.join('\n')));
          }
        }
      } catch (e) {
        if (ctrl.signal.aborted) return;
      }
      onState(false);
      await sleep(2000);
    }
  })();
  return ctrl;
}
