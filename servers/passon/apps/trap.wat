;; trap: executes `unreachable`.
(module
  ;;@alloc
  (func (export "handle") (param $p i32) (param $n i32) (result i32)
    (unreachable)))
