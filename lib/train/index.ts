/**
 * Training: the fit loop, learning-rate schedules, the paper's recipe, curves.
 * @module
 */
export { captureStep, type CaptureStepOptions, type CapturedStep, type StepOutput } from './capture.js';
export { fit, evaluate, NonFiniteLossError, type FitOptions, type EvaluateOptions, type Precision, type EpochMetrics, type Trainable, type Batch, type BatchSource, type StepInfo } from './fit.js';
export { stepSchedule, cosineSchedule, constantSchedule, type Schedule, type StepScheduleOptions, type CosineScheduleOptions, type WarmupOptions } from './schedule.js';
export { renderChart, writeChart, type Series, type ChartOptions } from './plot.js';
export { heRecipe, type Recipe } from './recipe.js';
export { saveCheckpoint, loadCheckpoint, readCheckpointState, type CheckpointState, type SaveCheckpointOptions, type LoadCheckpointOptions } from './checkpoint.js';
