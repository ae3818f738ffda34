/**
 * The training recipe of He et al. (2015), section 4.2 (CIFAR-10).
 * @module
 */

/** Hyper-parameters of a training recipe. */
export interface Recipe {
  lr: number;
  momentum: number;
  weightDecay: number;
  batchSize: number;
  /** Fractions of training at which the rate is divided by 10. */
  milestones: number[];
  /** Data augmentation: zero padding before the random crop, and random horizontal flips. */
  padCrop: number;
  flip: boolean;
}

/**
 * SGD with learning rate 0.1, momentum 0.9, weight decay 1e-4, batch 128, the rate divided by
 * 10 at 50% and 75% of training (the paper: at 32k and 48k of 64k iterations), 4-pixel
 * pad-and-crop and horizontal flips.
 */
export const heRecipe: Readonly<Recipe> = Object.freeze({
  lr: 0.1,
  momentum: 0.9,
  weightDecay: 1e-4,
  batchSize: 128,
  milestones: [0.5, 0.75],
  padCrop: 4,
  flip: true,
});
