"""One PRIME iteration as plain functions over tables (``stages``), its typed config
(``config``), table/tensor packing (``batch``) and campaign bookkeeping (``progress``)."""
