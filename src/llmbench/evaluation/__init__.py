"""Multiple-choice evaluation: tasks, prompts, and the statistics of the results."""
