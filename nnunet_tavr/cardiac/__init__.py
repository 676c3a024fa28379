"""Whole-heart analysis of seed 004: its structures, volumes, LV mass and agreement (``nnunet-tavr cardiac``).

- ``structures``: the seed's ten structures, their TotalSegmentator sources, the myocardial density
  and the seed's reported numbers (shared with the phantom's truth and the ``heart`` scheme);
- ``volumes``: reading folders of label maps or TotalSegmentator cases; volumes, LV mass and Dice
  per case;
- ``agreement``: pure statistics (Bland-Altman with CIs, Pearson with its Fisher CI, quartiles);
- ``report``: tables, CSV/JSON files and the Markdown report; ``figures``: the plots;
- ``cli``: the ``nnunet-tavr cardiac`` subcommand.

See docs/cardiac.md.
"""
