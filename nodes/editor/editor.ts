import type { NodeAPI } from 'node-red';
import { registerAnalysisRoute } from './analysis-route';

// The "spawn-editor" Node-RED plugin. Its editor side, editor.html, is loaded before any node's
// HTML: the code and dialog rows the six pattern nodes share (window.SpawnRed), with its strings
// in locales/<lang>/editor.json. Its runtime side serves the admin route behind the "spawn"
// sidebar (analysis-route.ts; the sidebar itself is the spawn-sidebar plugin, ../sidebar/).
export = (RED: NodeAPI) => {
  RED.plugins.registerPlugin('spawn-editor', { type: 'spawn-editor' });
  registerAnalysisRoute(RED);
};
