/**
 * Guards the public API: the names src/index.ts exports (values at run time,
 * and types), and that each one carries TSDoc with an example. Changing the
 * surface must be a deliberate edit of the lists below (and of docs/API.md).
 */
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers.js';

const VALUES = [
  'CACHEDIR_SIGNATURE', 'CofferError', 'DEFAULT_CHUNKER', 'DEFAULT_PACK_SIZE', 'EXIT_CODES', 'LocalBackend', 'PatternList', 'Repository', 'VERSION',
  'applyTagChange', 'backup', 'changeTags', 'createFilter', 'defaultCacheDir', 'diffTrees', 'findPath', 'initRepository', 'isCofferError',
  'openBackend', 'openFileStream', 'openRepository', 'parsePatternFile', 'restore', 'snapshotStats', 'walkTree',
  'KeyAdmin', 'RecoveryCodeError', 'StorageError', 'copySnapshots', 'decodeRecoveryCode', 'encodeRecoveryCode',
  'RetryBackend', 'applyPolicy', 'applyPolicyGrouped', 'check', 'executePrune', 'listLocks', 'lockRepository', 'parseDuration', 'planPrune',
  'reencrypt', 'removeLocks', 'repairIndex', 'repairSnapshots', 'withLock',
];

const TYPES = [
  'Backend', 'BackupOptions', 'BackupProgress', 'BackupResult', 'BackupWarning', 'BlobId', 'Change', 'ChangeKind', 'ChunkerParams', 'DiffStats',
  'EntryFilter', 'EntryStat', 'EntryVerdict', 'ErrorCode', 'FileType', 'FoundPath', 'Handle', 'InitOptions', 'NodeType', 'ObjectInfo', 'OpenOptions', 'OverwritePolicy',
  'PackId', 'RawDataStats', 'ReadBackend', 'RestoreItem', 'RestoreOptions', 'RestoreProgress', 'RestoreResult', 'RestoreSize', 'RestoreWarning',
  'SelectOptions', 'Snapshot', 'SnapshotData', 'SnapshotId', 'SnapshotStats', 'SnapshotSummary', 'TagChange', 'TreeEntry', 'TreeNode',
  'BackendOptions', 'CopyOptions', 'CopyResult', 'KeyListEntry', 'RepoSecret', 'StorageErrorKind',
  'CheckOptions', 'CheckProblem', 'CheckResult', 'GroupField', 'HeldLock', 'LockData', 'LockEntry', 'MaxUnused', 'PruneOptions', 'PrunePlan',
  'ReencryptResult', 'RetentionPolicy', 'RetryOptions',
];

describe('public API', () => {
  it('exports exactly these values at run time', async () => {
    const api = await import('../dist/src/index.js');
    expect(Object.keys(api).sort()).toEqual([...VALUES].sort());
  });

  it('exports exactly these names, each with TSDoc and an @example', () => {
    const index = path.join(ROOT, 'src', 'index.ts');
    const program = ts.createProgram([index], {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      strict: true,
      skipLibCheck: true,
      noEmit: true,
    });
    const checker = program.getTypeChecker();
    const mod = checker.getSymbolAtLocation(program.getSourceFile(index)!)!;
    const exported = checker.getExportsOfModule(mod);
    expect(exported.map((e) => e.name).sort()).toEqual([...VALUES, ...TYPES].sort());
    const undocumented: string[] = [];
    for (const e of exported) {
      const target = e.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(e) : e;
      const doc = ts.displayPartsToString(target.getDocumentationComment(checker)).trim();
      const example = target.getJsDocTags(checker).some((t) => t.name === 'example');
      if (!doc || !example) undocumented.push(e.name);
    }
    expect(undocumented).toEqual([]);
  });
});

describe('docs/API.md', () => {
  it('the embed example runs as written (with the package name pointed at dist)', async () => {
    const { readFileSync, writeFileSync, mkdirSync } = await import('node:fs');
    const { spawnSync } = await import('node:child_process');
    const { scratch } = await import('./helpers.js');
    const md = readFileSync(path.join(ROOT, 'docs', 'API.md'), 'utf8');
    const code = /```js\n([\s\S]*?)```/.exec(md)![1].replace("from 'coffer'", `from ${JSON.stringify(path.join(ROOT, 'dist/src/index.js'))}`);
    const { dir, cleanup } = scratch('coffer-api-');
    try {
      const script = path.join(dir, 'example.mjs');
      writeFileSync(script, code);
      mkdirSync(path.join(dir, 'src'));
      writeFileSync(path.join(dir, 'src', 'hello.txt'), 'hello from the example\n');
      writeFileSync(path.join(dir, 'src', 'skip.tmp'), 'x');
      const env = { ...process.env, COFFER_TEST_LOW_KDF: '1', MY_BACKUP_PASSWORD: 'pw', XDG_CACHE_HOME: path.join(dir, 'cache') };
      const args = [script, path.join(dir, 'repo'), path.join(dir, 'src'), path.join(dir, 'out.txt')];
      for (let i = 0; i < 2; i++) {
        const r = spawnSync(process.execPath, args, { env, encoding: 'utf8' });
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout.trim().split('\n')).toHaveLength(i + 1);
      }
      expect(readFileSync(path.join(dir, 'out.txt'), 'utf8')).toBe('hello from the example\n');
    } finally {
      cleanup();
    }
  });
});
