/**
 * Dependency order for stages: dependencies first, ties broken by the order given (tab order in a
 * flow, array order in a pipeline). Where stages depend on each other in a cycle, the stages left
 * over follow in the given order and one cycle is returned, in data-flow direction
 * (`a → b → a`: b reads from a, a reads from b), starting at its earliest stage.
 */
export function topoOrder(ids: readonly string[], depsOf: (id: string) => readonly string[]): { order: string[]; cycle?: string[] } {
  const known = new Set(ids);
  const deps = new Map<string, string[]>();
  for (const id of ids) if (!deps.has(id)) deps.set(id, [...new Set(depsOf(id))].filter((d) => known.has(d)));
  const placed = new Set<string>();
  const order: string[] = [];
  const unique = [...deps.keys()];
  for (;;) {
    const next = unique.find((id) => !placed.has(id) && deps.get(id)!.every((d) => placed.has(d)));
    if (next === undefined) break;
    placed.add(next);
    order.push(next);
  }
  const rest = unique.filter((id) => !placed.has(id));
  if (rest.length === 0) return { order };
  // Every stage left has a dependency left: walk dependencies until one repeats.
  const walk = [rest[0]];
  for (;;) {
    const cur = walk[walk.length - 1];
    const dep = rest.find((id) => deps.get(cur)!.includes(id))!;
    const seen = walk.indexOf(dep);
    if (seen >= 0) {
      const loop = walk.slice(seen).reverse(); // dependency direction → data-flow direction
      const first = loop.reduce((best, id) => (unique.indexOf(id) < unique.indexOf(best) ? id : best), loop[0]);
      const k = loop.indexOf(first);
      const rotated = [...loop.slice(k), ...loop.slice(0, k)];
      return { order: [...order, ...rest], cycle: [...rotated, first] };
    }
    walk.push(dep);
  }
}
