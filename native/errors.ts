/**
 * Errors a transport reports. `code` is stable and machine-readable (tests and Catch nodes can
 * switch on it); `message` is written for the user and names the endpoint or value at fault.
 */
export type StreamErrorCode =
  | 'EADDRINUSE' // a bind address is taken by another socket or program
  | 'EBIND' // bind failed for another reason (address not on this host, permission)
  | 'EENDPOINT' // an endpoint string is malformed
  | 'EMSGSIZE' // a message is larger than the configured maximum
  | 'EBADFRAME' // a received frame does not parse
  | 'EPROTO' // a peer broke the ZeroMQ handshake (not a ZeroMQ peer, or garbage bytes)
  | 'ENOPEER' // messages wait and no peer is connected
  | 'EQUEUEFULL' // the node's queue reached its limit: the message is refused, not dropped
  | 'EHOSTUNREACH' // a router reply names an identity that is not connected
  | 'EENCODE' // a payload cannot be encoded (e.g. circular object)
  | 'ECLOSED' // the node closed before the message could be sent
  | 'ETLS' // QUIC: a certificate was refused (the peer's, or ours by the peer): not the same pipeline CA
  | 'EAUTH' // CurveZMQ: a peer's key is not the pipeline's
  | 'EPEERLOST' // exactly-once: a peer went silent with messages unacknowledged (they are resent)
  | 'EPEERGONE' // a connected peer went away without saying goodbye (RDMA: what was in flight to it may be lost)
  | 'EFABRIC' // libfabric refused or failed an operation (RDMA)
  | 'ESTATEFILE' // exactly-once: the receiver's watermark file cannot be written
  | 'ESEND'; // any other send failure

export class StreamError extends Error {
  constructor(
    readonly code: StreamErrorCode,
    message: string,
  ) {
    super(message);
    // Shown first in logs and in msg.error.message: "EADDRINUSE: cannot bind tcp://*:5555 …".
    this.name = code;
  }
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
