/** The losses; importing this module registers them in LOSSES. */
export * from './cross_entropy_loss.ts';
export * from './focal_loss.ts';
export * from './l1_loss.ts';
export * from './utils.ts';
