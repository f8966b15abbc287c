import type { NodeAPI } from 'node-red';

// The "spawn-editor" Node-RED plugin: nothing at run time. It exists for its editor side,
// editor.html, which Node-RED loads before any node's HTML: the code and dialog rows the six
// pattern nodes share (window.SpawnRed), with its strings in locales/<lang>/editor.json.
export = (RED: NodeAPI) => {
  RED.plugins.registerPlugin('spawn-editor', { type: 'spawn-editor' });
};
