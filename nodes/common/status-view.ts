import type { Node } from 'node-red';
import type { StreamStatus } from '../../native/zmq';

/**
 * A stream node's status dot, the same for the pattern nodes and the RDMA nodes: a red ring on
 * error, a yellow ring while connecting, a green dot when ready, yellow with ", backpressure"
 * while input messages are held. `readyText` may add to the ready text (the pattern nodes' rates).
 * A status the same as the one shown is not sent again: a steady rate makes the same text.
 */
export class StatusView {
  private last: StreamStatus = { state: 'connecting', peers: 0, text: 'starting' };
  private backpressured = false;
  private shown = '';

  constructor(
    private readonly node: Pick<Node, 'status'>,
    private readonly readyText: (text: string) => string = (text) => text,
  ) {}

  show(s: StreamStatus): void {
    this.last = s;
    if (s.state === 'error') this.put('red', 'ring', s.text);
    else if (s.state === 'connecting') this.put('yellow', 'ring', s.text);
    else {
      const text = this.readyText(s.text);
      this.put(this.backpressured ? 'yellow' : 'green', 'dot', this.backpressured ? `${text}, backpressure` : text);
    }
  }

  /** The stream's backpressure turned on or off: the last status again, marked or not. */
  backpressure(on: boolean): void {
    this.backpressured = on;
    this.show(this.last);
  }

  /** The last status again, e.g. when what readyText adds changed. */
  refresh(): void {
    this.show(this.last);
  }

  private put(fill: 'red' | 'yellow' | 'green', shape: 'ring' | 'dot', text: string): void {
    const key = `${fill} ${shape} ${text}`;
    if (key === this.shown) return;
    this.shown = key;
    this.node.status({ fill, shape, text });
  }
}
