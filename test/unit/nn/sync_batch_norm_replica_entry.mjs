// Entry point of the SyncBN test replicas. On Node 20, tsx registers its TypeScript loader only in
// the main thread, so each worker registers it before importing the .ts code.
import { register } from 'tsx/esm/api';

register();
await import('./sync_batch_norm_replica.ts');
