"""The ANIMAL-10N task (Song et al. 2019): real human label noise on 10 confusable animals."""
