import { StreamError } from './errors';

/**
 * Endpoints as users type them: `tcp://host:port`, or `host:port` (tcp assumed). Checked here,
 * before ZeroMQ sees them, so that a typo is reported with the value and the reason instead of
 * libzmq's bare "Invalid argument".
 */
export interface Endpoint {
  host: string;
  port: number;
}

const HOST = /^(\*|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])$/;

export function parseEndpoint(text: string, role: 'bind' | 'connect'): Endpoint {
  const raw = text.trim();
  const m = /^(?:([a-z]+):\/\/)?(.+):([^:\]]+)$/.exec(raw);
  if (!m) throw new StreamError('EENDPOINT', `endpoint "${raw}" is not of the form tcp://host:port`);
  const [, scheme, host, portText] = m;
  if (scheme !== undefined && scheme !== 'tcp') {
    throw new StreamError('EENDPOINT', `endpoint "${raw}": transport "${scheme}" is not supported here (use tcp://)`);
  }
  if (!HOST.test(host)) throw new StreamError('EENDPOINT', `endpoint "${raw}": "${host}" is not a host name or address`);
  if (host === '*' && role === 'connect') {
    throw new StreamError('EENDPOINT', `endpoint "${raw}": "*" can only be bound, not connected to; name the host`);
  }
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) {
    throw new StreamError('EENDPOINT', `endpoint "${raw}": port "${portText}" is not a number from 1 to 65535`);
  }
  return { host, port };
}

export function formatEndpoint(e: Endpoint): string {
  return `tcp://${e.host}:${e.port}`;
}

/** A list typed in one field: separated by commas, spaces or new lines; empty entries ignored. */
export function splitList(text: string | undefined): string[] {
  return (text ?? '')
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}
