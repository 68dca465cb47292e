"""python -m mediasrv"""

from mediasrv.cli import main

raise SystemExit(main())
