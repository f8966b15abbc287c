/**
 * The one table of libfabric ABI facts this binding relies on: struct sizes, field offsets,
 * ops-table slots and constants, for x86_64 and libfabric 1.17 (Debian 12's libfabric1).
 *
 * Why a table: koffi calls C, but libfabric's data-path calls (fi_domain, fi_send, fi_cq_read,
 * fi_close, ...) are static inline functions in the headers, not exported symbols. Each one
 * reads a function pointer out of an ops table hanging off the object (`fid.ops`,
 * `fid_domain.ops`, `fid_ep.msg`, ...) and calls it. We do the same reads by offset. A wrong
 * number here is not an exception: it is a SIGSEGV. So every number below is checked against
 * the installed C headers by test/fabric-layout.test.ts (it compiles an offsetof program).
 *
 * Ops tables start with `size_t size`; a provider may allocate a shorter table than the
 * header's, so before calling a slot we check `size > slot offset` and that the pointer is
 * non-NULL, as libfabric's own FI_CHECK_OP does. Tables only grow at the end between 1.x
 * releases, so these offsets also hold for the newer libfabric on AWS EFA images.
 */

/** struct name → { size (sizeof), fields: field name → offsetof }. */
export const STRUCTS = {
  fi_info: {
    size: 120,
    fields: { next: 0, caps: 8, mode: 16, addr_format: 24, src_addrlen: 32, dest_addrlen: 40, src_addr: 48,
      dest_addr: 56, handle: 64, tx_attr: 72, rx_attr: 80, ep_attr: 88, domain_attr: 96, fabric_attr: 104, nic: 112 },
  },
  fi_tx_attr: { size: 80, fields: { caps: 0, mode: 8, op_flags: 16, msg_order: 24, comp_order: 32, inject_size: 40, size: 48, iov_limit: 56 } },
  fi_rx_attr: { size: 64, fields: { caps: 0, mode: 8, op_flags: 16, msg_order: 24, comp_order: 32, size: 48 } },
  fi_ep_attr: { size: 96, fields: { type: 0, protocol: 4, protocol_version: 8, max_msg_size: 16 } },
  fi_domain_attr: { size: 192, fields: { domain: 0, name: 8, threading: 16, data_progress: 24, av_type: 32, mr_mode: 36 } },
  fi_fabric_attr: { size: 32, fields: { fabric: 0, name: 8, prov_name: 16, prov_version: 24, api_version: 28 } },
  fi_cq_attr: { size: 40, fields: { size: 0, flags: 8, format: 16, wait_obj: 20, signaling_vector: 24, wait_cond: 28, wait_set: 32 } },
  fi_av_attr: { size: 48, fields: { type: 0, rx_ctx_bits: 4, count: 8, ep_per_node: 16, name: 24, map_addr: 32, flags: 40 } },
  fi_cq_msg_entry: { size: 24, fields: { op_context: 0, flags: 8, len: 16 } },
  fi_cq_err_entry: { size: 80, fields: { op_context: 0, flags: 8, len: 16, olen: 48, err: 56, prov_errno: 60 } },
  /** Per-operation scratch space a provider may use when it asks for FI_CONTEXT2 in mode. */
  fi_context2: { size: 64, fields: {} },

  // Objects: every one starts with `struct fid` (fclass, context, ops) and then its own tables.
  fid: { size: 24, fields: { fclass: 0, context: 8, ops: 16 } },
  fid_fabric: { size: 40, fields: { fid: 0, ops: 24, api_version: 32 } },
  fid_domain: { size: 40, fields: { fid: 0, ops: 24, mr: 32 } },
  fid_ep: { size: 80, fields: { fid: 0, ops: 24, cm: 32, msg: 40 } },
  fid_cq: { size: 32, fields: { fid: 0, ops: 24 } },
  fid_av: { size: 32, fields: { fid: 0, ops: 24 } },
  fid_mr: { size: 40, fields: { fid: 0, mem_desc: 24, key: 32 } },

  // Ops tables: `size` first, then function pointers (the slots we call).
  fi_ops: { size: 56, fields: { size: 0, close: 8, bind: 16, control: 24 } }, // fi_close, fi_ep_bind, fi_enable
  fi_ops_fabric: { size: 56, fields: { size: 0, domain: 8 } }, // fi_domain
  fi_ops_domain: { size: 96, fields: { size: 0, av_open: 8, cq_open: 16, endpoint: 24 } }, // fi_av_open, fi_cq_open, fi_endpoint
  fi_ops_mr: { size: 32, fields: { size: 0, reg: 8 } }, // fi_mr_reg
  fi_ops_cm: { size: 80, fields: { size: 0, getname: 16 } }, // fi_getname
  fi_ops_msg: { size: 80, fields: { size: 0, recv: 8, send: 32, sendv: 40 } }, // fi_recv, fi_send, fi_sendv
  fi_ops_cq: { size: 64, fields: { size: 0, read: 8, readerr: 24 } }, // fi_cq_read, fi_cq_readerr
  fi_ops_av: { size: 64, fields: { size: 0, insert: 8 } }, // fi_av_insert
} as const;

/** The constants we pass or compare, with their values in the 1.17 headers. */
export const CONSTANTS = {
  FI_MAJOR_VERSION: 1,
  FI_MINOR_VERSION: 17,
  FI_MSG: 1n << 1n,
  FI_RECV: 1n << 10n,
  FI_SEND: 1n << 11n,
  FI_TRANSMIT: 1n << 11n,
  FI_SOURCE: 1n << 57n,
  FI_CONTEXT: 1n << 59n,
  FI_CONTEXT2: 1n << 52n,
  FI_ORDER_SAS: 1n << 8n,
  FI_ADDR_UNSPEC: 0xffffffffffffffffn,
  FI_MR_LOCAL: 1 << 2,
  FI_MR_VIRT_ADDR: 1 << 4,
  FI_MR_ALLOCATED: 1 << 5,
  FI_MR_PROV_KEY: 1 << 6,
  FI_EP_RDM: 3,
  FI_CQ_FORMAT_MSG: 2,
  FI_WAIT_NONE: 0,
  FI_AV_TABLE: 2,
  FI_ENABLE: 6,
  FI_EAGAIN: 11,
  FI_ENOENT: 2,
  FI_ENODATA: 61,
  FI_EAVAIL: 259,
  FI_ETOOSMALL: 257,
} as const;

export type StructName = keyof typeof STRUCTS;

/** Offset of `field` in `struct`: `off('fid_ep', 'msg')`. Typed so a typo fails to compile. */
export function off<S extends StructName>(struct: S, field: keyof (typeof STRUCTS)[S]['fields']): number {
  return (STRUCTS[struct].fields as Record<string, number>)[field as string];
}

export function size(struct: StructName): number {
  return STRUCTS[struct].size;
}
