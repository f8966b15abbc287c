import * as assert from 'assert';
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { BrowserContext, Page } from 'playwright-core';
import { freePort } from './support/ports';
import { requireSystem } from './support/system';

/**
 * The editor in a real browser (Debian's chromium through playwright-core), as a person uses it:
 * `spawn-red editor` on a fresh user directory; two stage nodes, an inject, a push, a pull and a
 * debug dragged from the palette onto two tabs and wired; the pull's source stage picked in its
 * dialog; Deploy; injected messages seen in the debug sidebar; the spawn sidebar's JSON equal to
 * `spawn-red export` of the saved flow file; a broken flow (a stage node deleted) listed as a
 * problem whose link reveals the pull. Screenshots of each step go to test-artifacts/editor-browser/.
 */

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'bin', 'spawn-red.js');
const CHROMIUM = '/usr/bin/chromium';
const SHOTS = path.join(ROOT, 'test-artifacts', 'editor-browser');
const STEP_MS = 15_000;

describe('editor in a real browser (chromium)', function () {
  this.timeout(120_000);
  let dir: string;
  let editor: ChildProcess | undefined;
  let editorOutput = '';
  let context: BrowserContext | undefined;
  let page: Page;
  let shot = 0;

  async function screenshot(step: string): Promise<void> {
    shot += 1;
    await page.screenshot({ path: path.join(SHOTS, `${String(shot).padStart(2, '0')}-${step}.png`) });
  }

  /** Start `spawn-red editor` and resolve with its URL once it serves the editor. */
  function startEditor(flowFile: string, userDir: string, port: number): Promise<string> {
    editor = spawn(process.execPath, [CLI, 'editor', flowFile, '--port', String(port), '--user-dir', userDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = editor;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`spawn-red editor did not start within 20 s:\n${editorOutput}`)), 20_000);
      const onData = (d: Buffer) => {
        editorOutput += d;
        const m = /editor at (http:\/\/\S+)/.exec(editorOutput);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      };
      proc.stdout!.on('data', onData);
      proc.stderr!.on('data', onData);
      proc.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`spawn-red editor exited with ${code}:\n${editorOutput}`));
      });
    });
  }

  before(async function () {
    requireSystem(this, 'chromium', fs.existsSync(CHROMIUM), 'apt-get install chromium');
    fs.mkdirSync(SHOTS, { recursive: true });
    for (const f of fs.readdirSync(SHOTS)) if (f.endsWith('.png')) fs.rmSync(path.join(SHOTS, f));
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-browser-'));
    fs.writeFileSync(path.join(dir, 'flows.json'), '[]');
    const url = await startEditor(path.join(dir, 'flows.json'), path.join(dir, 'user'), await freePort());
    const { chromium } = await import('playwright-core');
    context = await chromium.launchPersistentContext(path.join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1600, height: 1000 },
      acceptDownloads: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    context.setDefaultTimeout(STEP_MS);
    // The copy button is checked by reading the clipboard back.
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(url).origin });
    page = context.pages()[0] ?? (await context.newPage());
    await page.goto(url);
    await page.waitForSelector('.red-ui-palette-node[data-palette-type="spawn-push"]');
  });

  afterEach(async function () {
    // What the page looked like when a step did not happen.
    if (this.currentTest?.state === 'failed' && page) await screenshot('failed').catch(() => undefined);
  });

  after(async function () {
    await context?.close();
    if (editor && editor.exitCode === null) {
      const exited = new Promise((r) => editor!.once('exit', r));
      editor.kill('SIGTERM');
      await exited;
    }
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const activeTab = () => page.evaluate(() => (window as any).RED.workspaces.active() as string);
  const nodeSel = (id: string) => `#red-ui-workspace-chart g.red-ui-flow-node-group[id="${id}"]`;

  /** Drag a node from the palette onto the current tab at (x, y) of the canvas; returns the new node's id. */
  async function dropFromPalette(type: string, label: string, x: number, y: number): Promise<string> {
    const tab = await activeTab();
    const before = await page.evaluate(([z, t]) => (window as any).RED.nodes.filterNodes({ z, type: t }).map((n: { id: string }) => n.id) as string[], [tab, type]);
    const filter = page.locator('#red-ui-palette-search input');
    await filter.click();
    await filter.press('Control+a');
    await filter.press('Backspace');
    await filter.pressSequentially(label);
    const entry = page.locator(`.red-ui-palette-node[data-palette-type="${type}"]`);
    await entry.scrollIntoViewIfNeeded();
    const chart = (await page.locator('#red-ui-workspace-chart').boundingBox())!;
    const newNode = ([z, t, old]: readonly [string, string, string[]]) =>
      (window as any).RED.nodes.filterNodes({ z, type: t }).map((n: { id: string }) => n.id).find((i: string) => !old.includes(i));
    // The palette re-lays itself out while the filter applies, and a drag that starts on a moving
    // entry is a click: wait for the entry to keep still, and try again if the drop made no node.
    let id: string | undefined;
    for (let attempt = 1; attempt <= 3 && !id; attempt++) {
      let from = (await entry.boundingBox())!;
      for (let frames = 0; frames < 120; frames++) {
        await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
        const now = (await entry.boundingBox())!;
        if (now.x === from.x && now.y === from.y) break;
        from = now;
      }
      await page.mouse.move(from.x + from.width / 2, from.y + from.height / 2);
      await page.mouse.down();
      await page.mouse.move(chart.x + x, chart.y + y, { steps: 12 });
      await page.mouse.up();
      const made = await page.waitForFunction(newNode, [tab, type, before] as const, { timeout: attempt < 3 ? 3_000 : STEP_MS }).catch((e) => {
        if (attempt === 3) throw e;
        return undefined;
      });
      id = made ? ((await made.jsonValue()) as string) : undefined;
    }
    await filter.click();
    await filter.press('Control+a');
    await filter.press('Backspace');
    return id!;
  }

  /** Drag a wire from a node's output port to another node's input port. */
  async function wire(fromId: string, toId: string): Promise<void> {
    const out = (await page.locator(`${nodeSel(fromId)} .red-ui-flow-port-output .red-ui-flow-port`).boundingBox())!;
    const inp = (await page.locator(`${nodeSel(toId)} .red-ui-flow-port-input .red-ui-flow-port`).boundingBox())!;
    await page.mouse.move(out.x + out.width / 2, out.y + out.height / 2);
    await page.mouse.down();
    await page.mouse.move(inp.x + inp.width / 2, inp.y + inp.height / 2, { steps: 10 });
    await page.mouse.up();
    await page.waitForFunction(
      ([a, b]) => (window as any).RED.nodes.filterLinks({ source: { id: a }, target: { id: b } }).length === 1,
      [fromId, toId],
    );
  }

  async function openDialog(id: string): Promise<void> {
    await page.locator(`${nodeSel(id)} .red-ui-flow-node`).dblclick();
    await page.waitForSelector('#node-dialog-ok', { state: 'visible' });
    // The tray slides in from the right: wait until it has arrived beside the sidebar.
    await page.waitForFunction(() => {
      const tray = document.querySelector('.red-ui-tray')?.getBoundingClientRect();
      const sidebar = document.querySelector('#red-ui-sidebar')?.getBoundingClientRect();
      return !!tray && !!sidebar && tray.right <= sidebar.left;
    });
  }

  async function closeDialog(): Promise<void> {
    await page.click('#node-dialog-ok');
    await page.waitForSelector('#node-dialog-ok', { state: 'detached' });
  }

  async function showTab(tabId: string): Promise<void> {
    await page.click(`#red-ui-tab-${tabId} a.red-ui-tab-label`);
    await page.waitForFunction((z) => (window as any).RED.workspaces.active() === z, tabId);
  }

  const ids: Record<string, string> = {};
  let tab1 = '';
  let tab2 = '';
  let pushPort = 0;

  it('lists the spawn nodes in the palette, each with its icon', async function () {
    const category = page.locator('#red-ui-palette-container-spawn');
    await category.scrollIntoViewIfNeeded();
    const types = await category.locator('.red-ui-palette-node').evaluateAll((ns) => ns.map((n) => n.getAttribute('data-palette-type')));
    for (const t of ['spawn-stage', 'spawn-push', 'spawn-pull', 'spawn-pub', 'spawn-sub', 'spawn-router', 'spawn-dealer']) assert.ok(types.includes(t), `${t} in ${types.join(', ')}`);
    // Each icon loaded (an icon that fails to load leaves a zero-size image).
    const icons = await category.locator('.red-ui-palette-icon').evaluateAll((is) => is.map((i) => getComputedStyle(i).backgroundImage));
    assert.ok(icons.length >= 7 && icons.every((i) => /icons\/.*spawn-[a-z-]+\.svg/.test(i)), icons.join(' '));
    await category.screenshot({ path: path.join(SHOTS, '00-palette.png') });
    await page.locator('#red-ui-palette-container-common').scrollIntoViewIfNeeded();
  });

  it('builds a two-stage pipeline from the palette, deploys it and shows the injected messages in the debug sidebar', async function () {
    tab1 = await activeTab();
    ids.stage1 = await dropFromPalette('spawn-stage', 'stage', 140, 80);
    ids.inject = await dropFromPalette('inject', 'inject', 140, 200);
    ids.push = await dropFromPalette('spawn-push', 'push', 420, 200);
    await wire(ids.inject, ids.push);
    // Another test may hold the default port 5555: give the push a free one in its dialog.
    pushPort = await freePort();
    await openDialog(ids.push);
    await page.fill('#node-input-port', String(pushPort));
    await closeDialog();
    await screenshot('producer-tab');

    await page.click('#red-ui-workspace .red-ui-tab-button.red-ui-tabs-add a');
    await page.waitForFunction((z) => (window as any).RED.workspaces.active() !== z, tab1);
    tab2 = await activeTab();
    ids.stage2 = await dropFromPalette('spawn-stage', 'stage', 140, 80);
    ids.pull = await dropFromPalette('spawn-pull', 'pull', 140, 200);
    ids.debug = await dropFromPalette('debug', 'debug', 420, 200);
    await wire(ids.pull, ids.debug);

    await openDialog(ids.pull);
    const options = await page.locator('#node-input-sourceStage option').evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
    assert.deepEqual(options, ['', 'flow-1', 'flow-2'], 'the source-stage drop-down lists the stages of both tabs');
    // A stage without a matching output is flagged in the dialog before anything is deployed.
    await page.selectOption('#node-input-sourceStage', 'flow-2');
    await page.waitForSelector('#spawn-source-note.form-warning:has-text("Stage \\"flow-2\\" has no push node that binds")');
    await page.selectOption('#node-input-sourceStage', 'flow-1');
    await page.waitForSelector(`#spawn-source-note:has-text("127.0.0.1:${pushPort}")`);
    await screenshot('pull-dialog-source-stage');
    await closeDialog();
    await screenshot('consumer-tab');

    await page.click('#red-ui-header-button-deploy');
    await page.waitForFunction(() => !(window as any).RED.nodes.dirty());
    // The pull finds the producer stage's push on 127.0.0.1 and shows a green dot with its peer.
    await page.waitForSelector(`${nodeSel(ids.pull)} .red-ui-flow-node-status-label:text-matches("^tcp: 1 peer")`);
    await screenshot('deployed');

    await showTab(tab1);
    await page.click('#red-ui-tab-debug-link-button');
    for (let i = 0; i < 3; i++) await page.locator(`${nodeSel(ids.inject)} .red-ui-flow-node-button`).click();
    await page.waitForFunction(() => document.querySelectorAll('#red-ui-sidebar .red-ui-debug-msg').length >= 3);
    const payloads = await page.locator('#red-ui-sidebar .red-ui-debug-msg .red-ui-debug-msg-payload').allInnerTexts();
    assert.equal(payloads.length, 3, `three messages, got ${payloads.join(' | ')}`);
    for (const p of payloads) assert.match(p.trim(), /^\d{13}$/, 'the inject node\'s timestamp came through push and pull');
    await screenshot('debug-messages');
  });

  it('shows in the spawn sidebar the JSON that spawn-red export writes for the deployed flow (copied and downloaded the same), and the graph', async function () {
    assert.ok(ids.pull, 'the pipeline was built');
    await page.click('#red-ui-sidebar .red-ui-tab-link-button-menu');
    await page.click('#red-ui-tabs-menu-option-spawn');
    const flowFile = path.join(dir, 'flows.json');
    const cli = spawnSync(process.execPath, [CLI, 'export', flowFile], { encoding: 'utf8' });
    assert.equal(cli.status, 0, cli.stderr);
    const exported = JSON.parse(cli.stdout);
    assert.deepEqual(
      exported.stages.map((s: { stage_id: string }) => s.stage_id),
      ['flow-1', 'flow-2'],
    );
    const pre = page.locator('#red-ui-sidebar pre.spawn-pipeline-json');
    await page.waitForFunction((text) => document.querySelector('#red-ui-sidebar pre.spawn-pipeline-json')?.textContent === text, cli.stdout);
    assert.deepEqual(JSON.parse((await pre.textContent())!), exported);
    await page.waitForSelector('#red-ui-sidebar .spawn-no-problems');
    // The graph: a box per stage with its instances, an arrow labelled protocol, pattern and port.
    const boxes = await page
      .locator('#red-ui-sidebar svg.spawn-graph g.spawn-graph-stage')
      .evaluateAll((gs) => gs.map((g) => Array.from(g.querySelectorAll('text')).map((t) => t.textContent).join(' | ')));
    assert.deepEqual(boxes, ['flow-1 | \u00d7 1 c5.xlarge', 'flow-2 | \u00d7 1 c5.xlarge']);
    const edge = await page.locator('#red-ui-sidebar svg.spawn-graph g.spawn-graph-edge[data-from="flow-1"][data-to="flow-2"] text').allTextContents();
    assert.deepEqual(edge, ['zmq push/pull', `:${pushPort}`]);
    await screenshot('spawn-sidebar');

    // Copy and Download give the same text.
    await page.click('#red-ui-sidebar button.spawn-sidebar-copy');
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), cli.stdout);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#red-ui-sidebar button.spawn-sidebar-download')]);
    assert.equal(download.suggestedFilename(), 'flows.json');
    const saved = path.join(dir, 'downloaded.json');
    await download.saveAs(saved);
    assert.equal(fs.readFileSync(saved, 'utf8'), cli.stdout);

    // A stage's box shows its stage node.
    await page.click('#red-ui-sidebar svg.spawn-graph g.spawn-graph-stage[data-stage="flow-2"]');
    await page.waitForFunction(
      ([z, id]) => {
        const RED = (window as any).RED;
        return RED.workspaces.active() === z && RED.view.selection().nodes?.some((n: { id: string }) => n.id === id);
      },
      [tab2, ids.stage2],
    );
  });

  it('warns in the dialog of a node that would bind a port another node of its stage binds', async function () {
    assert.ok(ids.push, 'the pipeline was built');
    await showTab(tab1);
    const pub = await dropFromPalette('spawn-pub', 'pub', 420, 320);
    await openDialog(pub);
    const note = page.locator('#spawn-port-note');
    assert.equal(await note.isVisible(), false, 'no warning for a free port');
    await page.fill('#node-input-port', String(pushPort));
    await page.locator('#spawn-port-note', { hasText: `Port ${pushPort} is also bound by push :${pushPort} on this tab` }).waitFor();
    await screenshot('dialog-port-warning');
    await page.fill('#node-input-port', String(pushPort + 1 > 65535 ? pushPort - 1 : pushPort + 1));
    await note.waitFor({ state: 'hidden' });
    await page.click('#node-dialog-cancel');
  });

  it('lists a broken flow\'s problem in the spawn sidebar, and its link reveals the node', async function () {
    assert.ok(ids.pull, 'the pipeline was built');
    await showTab(tab1);
    await page.locator(`${nodeSel(ids.stage1)} .red-ui-flow-node`).click();
    await page.keyboard.press('Delete');
    await page.waitForFunction((id) => !(window as any).RED.nodes.node(id), ids.stage1);
    const problem = page.locator('#red-ui-sidebar a.spawn-problem', { hasText: 'stage "flow-1" does not exist' });
    await problem.waitFor();
    assert.match((await problem.textContent())!, /^tab "Flow 2", pull \w+: source stage: stage "flow-1" does not exist \(stages: flow-2\)$/);
    assert.equal(await problem.getAttribute('data-node-id'), ids.pull);
    await screenshot('broken-flow-problem');
    await problem.click();
    await page.waitForFunction(
      ([z, id]) => {
        const RED = (window as any).RED;
        return RED.workspaces.active() === z && RED.view.selection().nodes?.some((n: { id: string }) => n.id === id);
      },
      [tab2, ids.pull],
    );
    await screenshot('problem-revealed');
  });
});
