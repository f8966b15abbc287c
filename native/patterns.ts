/**
 * The six ZeroMQ patterns and which way their messages go. Kept apart from zmq.ts (which loads
 * zeromq) so that the launcher can classify a stage's nodes before its runtime starts
 * (launcher/gc-tuning.ts).
 */

export type Pattern = 'push' | 'pull' | 'pub' | 'sub' | 'router' | 'dealer';

export const SENDS: Record<Pattern, boolean> = { push: true, pull: false, pub: true, sub: false, router: true, dealer: true };
export const RECEIVES: Record<Pattern, boolean> = { push: false, pull: true, pub: false, sub: true, router: true, dealer: true };
