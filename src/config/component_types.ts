/**
 * Type maps from registered `type` names to option interfaces, one per registry. Each
 * component module adds its entry by module augmentation, for example
 *
 *   declare module '../../config/component_types.ts' {
 *     interface BackboneTypes { RLAResNet: RLAResNetOptions }
 *   }
 *
 * so that a config's `type` selects the options that the type checker expects, and a key
 * that only another component accepts is a compile error.
 */

/* eslint-disable @typescript-eslint/no-empty-interface */
export interface BackboneTypes {}
export interface NeckTypes {}
export interface DenseHeadTypes {}
export interface DetectorTypes {}
export interface ClassifierTypes {}
export interface DatasetTypes {}
export interface TransformTypes {}
export interface LossTypes {}
export interface AssignerTypes {}
export interface SamplerTypes {}
export interface BoxCoderTypes {}
export interface AnchorGeneratorTypes {}

/** The config union of a type map: `{type: 'A'} & OptionsA | {type: 'B'} & OptionsB | ...`. */
export type ConfigOf<M> = { [K in keyof M & string]: { type: K } & M[K] }[keyof M & string];

export type BackboneConfig = ConfigOf<BackboneTypes>;
export type NeckConfig = ConfigOf<NeckTypes>;
export type DenseHeadConfig = ConfigOf<DenseHeadTypes>;
export type DetectorConfig = ConfigOf<DetectorTypes>;
export type ClassifierConfig = ConfigOf<ClassifierTypes>;
export type DatasetConfig = ConfigOf<DatasetTypes>;
export type TransformConfig = ConfigOf<TransformTypes>;
export type LossConfig = ConfigOf<LossTypes>;
export type AssignerConfig = ConfigOf<AssignerTypes>;
export type SamplerConfig = ConfigOf<SamplerTypes>;
export type BoxCoderConfig = ConfigOf<BoxCoderTypes>;
export type AnchorGeneratorConfig = ConfigOf<AnchorGeneratorTypes>;
