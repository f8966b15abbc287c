/**
 * JSON.parse with a line and column for the error, for messages such as
 * `flows.json: line 12, column 5: Expected ',' or '}' after property value`.
 *
 * Node's messages give "at position N" for some errors and none for others ("Unexpected token
 * 'x', "…" is not valid JSON", "Unexpected end of JSON input"); where none is given, a small
 * scanner of the JSON grammar finds the offset of the first error.
 */

export type JsonParse = { ok: true; value: unknown } | { ok: false; line: number; column: number; reason: string };

export function parseJson(text: string): JsonParse {
  // Editors on Windows may save a byte-order mark; JSON.parse refuses it.
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  try {
    return { ok: true, value: JSON.parse(body) };
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const at = /\bat position (\d+)/.exec(message);
    const offset = at ? Number(at[1]) : firstErrorOffset(body);
    const { line, column } = lineColumn(body, offset);
    return { ok: false, line, column, reason: jsonReason(message) };
  }
}

/** The reason without the position and without the copy of the input some messages carry. */
export function jsonReason(message: string): string {
  return (
    message
      .replace(/, (?:\.\.\.)?".*" is not valid JSON$/s, '')
      .replace(/\s*\(line \d+ column \d+\)\s*$/, '')
      .replace(/(?: in JSON)? at position \d+\s*$/, '')
      .trim() || 'not valid JSON'
  );
}

/** 1-based line and column of a character offset. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)));
  const lines = before.split('\n');
  return { line: lines.length, column: lines[lines.length - 1].length + 1 };
}

class At {
  constructor(readonly offset: number) {}
}

/** Offset of the first character where `text` stops being JSON (text.length at a premature end), or -1. */
export function firstErrorOffset(text: string): number {
  let i = 0;
  const fail = (at = i): never => {
    throw new At(at);
  };
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const digits = () => {
    const start = i;
    while (i < text.length && text[i] >= '0' && text[i] <= '9') i++;
    if (i === start) fail();
  };
  const literal = (word: string) => {
    for (const c of word) {
      if (text[i] !== c) fail();
      i++;
    }
  };
  const string = () => {
    i++; // opening quote
    for (;;) {
      if (i >= text.length) fail();
      const c = text[i];
      if (c === '"') {
        i++;
        return;
      }
      if (c === '\\') {
        const e = text[i + 1];
        if (e === undefined) fail(i + 1);
        if (e === 'u') {
          for (let k = 2; k < 6; k++) if (!/[0-9a-fA-F]/.test(text[i + k] ?? '')) fail(i + k);
          i += 6;
        } else if ('"\\/bfnrt'.includes(e)) i += 2;
        else fail(i + 1);
      } else if (c < ' ') fail();
      else i++;
    }
  };
  const number = () => {
    if (text[i] === '-') i++;
    if (text[i] === '0') i++;
    else digits();
    if (text[i] === '.') {
      i++;
      digits();
    }
    if (text[i] === 'e' || text[i] === 'E') {
      i++;
      if (text[i] === '+' || text[i] === '-') i++;
      digits();
    }
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail();
        string();
        ws();
        if (text[i] !== ':') fail();
        i++;
        value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === '}') {
          i++;
          return;
        } else fail();
      }
    } else if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === ']') {
          i++;
          return;
        } else fail();
      }
    } else if (c === '"') string();
    else if (c === 't') literal('true');
    else if (c === 'f') literal('false');
    else if (c === 'n') literal('null');
    else if (c === '-' || (c >= '0' && c <= '9')) number();
    else fail();
  };
  try {
    value();
    ws();
    if (i < text.length) fail();
    return -1;
  } catch (e) {
    if (e instanceof At) return Math.min(e.offset, text.length);
    throw e;
  }
}
