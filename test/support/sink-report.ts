/** What the seq-sink test node reports (over IPC, or to its report file), once in a while and when done. */
export interface SinkReport {
  label: string;
  count: number;
  bytes: number;
  firstAt: number;
  lastAt: number;
  outOfOrder: number;
  /** Sum of the sequence numbers seen: shares of one stream add up to n(n-1)/2 when nothing repeats. */
  seqSum: number;
  /** Sequence numbers seen more than once (ordering `any`). */
  duplicates: number;
  firstProblem?: string;
  types: Record<string, number>;
  done: boolean;
}
