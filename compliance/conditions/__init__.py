"""The six conditions of UCC §9-105(b) (``policies``), what they look at (``evidence``) and the copy mark they
recognise (``copy_mark``), and the check of that mark on pixels at issuance (``mark_check``)."""
