import type { NodeAPI } from 'node-red';

// The "spawn-sidebar" Node-RED plugin: nothing at run time (the admin route it calls is served by
// the spawn-editor plugin, ../editor/analysis-route.ts). Its editor side, sidebar.html, adds the
// "spawn" sidebar tab; its strings are in locales/<lang>/sidebar.json.
export = (RED: NodeAPI) => {
  RED.plugins.registerPlugin('spawn-sidebar', { type: 'spawn-sidebar' });
};
