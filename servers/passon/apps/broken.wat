;; broken: answers requests but fails its self-test, so a node refuses to switch to it.
(module
  ;;@alloc
  (func (export "handle") (param $p i32) (param $n i32) (result i32)
    (call $output (local.get $p) (local.get $n))
    (i32.const 0))
  (func (export "selftest") (result i32) (i32.const 1)))
